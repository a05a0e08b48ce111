// Ops::eval_token_stats on host memory (backend/ops.h): the reference that the CUDA kernel is
// tested against, and the same arithmetic as eval/perplexity.cpp's token_stats over
// eval/logits_codec.cpp's encode_dist (tests/eval checks that the three agree exactly).
#include <algorithm>
#include <cmath>

#include "backend/ops.h"
#include "core/error.h"
#include "core/log_softmax.h"
#include "core/parallel.h"

namespace samq {

namespace {

// One row of the base in the codec's terms: code(i) for every id, scale, min_log_prob.
struct BaseRow {
  float scale = 0, min_log_prob = 0;
  // sparse form
  const int32_t* ids = nullptr;
  const uint16_t* codes = nullptr;
  int64_t count = 0;
  // dense form (encode_dist on the fly)
  const float* logits = nullptr;
  float lo = 0, inv = 0;

  // encode_dist's code of logit l (0: not stored).
  uint16_t dense_code(float l) const {
    if (scale == 0.0f || !(l > lo)) return 0;
    const long c = std::lrintf(inv * (l - lo));
    return c > 0 ? uint16_t(std::min<long>(c, 65535)) : 0;
  }
};

BaseRow dense_row(const float* logits, int64_t v) {
  // encode_dist (eval/logits_codec.cpp), without materializing the codes.
  const DistCodeRange d = dist_code_range(logits, v);
  BaseRow b;
  b.logits = logits;
  b.min_log_prob = d.min_log_prob;
  b.scale = d.scale;
  b.lo = d.lo;
  if (b.scale != 0.0f) b.inv = 1.0f / b.scale;
  return b;
}

EvalTokenStats row_stats(const float* logits, int64_t v, int32_t next, const BaseRow* base) {
  EvalTokenStats st;
  const ArgmaxLse al = argmax_lse(logits, v);
  const int32_t imax = al.argmax;
  const float lse = al.lse;
  const float nll = lse - logits[next];
  st.nll = nll;
  if (!base) return st;
  // KL over the codes > 0 in id order; base argmax: first id with the largest code (0 if none).
  double kld = 0;
  int32_t best = 0;
  uint16_t best_code = 0, next_code = 0;
  auto term = [&](int32_t id, uint16_t code) {
    const float lp = base->scale * float(code) + base->min_log_prob;
    kld += std::exp(lp) * (lp - (logits[id] - lse));
    if (code > best_code) {
      best_code = code;
      best = id;
    }
    if (id == next) next_code = code;
  };
  if (base->logits) {
    for (int64_t i = 0; i < v; ++i) {
      const uint16_t c = base->dense_code(base->logits[i]);
      if (c > 0) term(int32_t(i), c);
    }
  } else {
    for (int64_t k = 0; k < base->count; ++k) term(base->ids[k], base->codes[k]);
  }
  const float nll_base = -(base->scale * float(next_code) + base->min_log_prob);
  st.nll_base = nll_base;
  st.kld = float(kld);
  st.dp = std::exp(-nll) - std::exp(-nll_base);
  st.same_top = imax == best ? 1 : 0;
  return st;
}

}  // namespace

void Ops::eval_token_stats(const float* logits, int64_t n, int64_t v, const int32_t* next, const EvalBase* base,
                           EvalTokenStats* out) const {
  if (n <= 0) return;
  if (v <= 0) fail("{}: eval_token_stats over an empty vocabulary", name());
  for (int64_t r = 0; r < n; ++r)
    if (next[r] < 0 || next[r] >= v) fail("{}: eval_token_stats: next token {} at row {} out of range (vocabulary {})", name(), next[r], r, v);
  parallel_for(n, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      BaseRow row;
      const BaseRow* pb = nullptr;
      if (base && base->logits) {
        row = dense_row(base->logits + r * v, v);
        pb = &row;
      } else if (base) {
        row.scale = base->scale[r];
        row.min_log_prob = base->min_log_prob[r];
        row.ids = base->ids + base->offsets[r];
        row.codes = base->codes + base->offsets[r];
        row.count = base->offsets[r + 1] - base->offsets[r];
        pb = &row;
      }
      out[r] = row_stats(logits + r * v, v, next[r], pb);
    }
  });
}

}  // namespace samq
