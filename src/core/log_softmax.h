// The two reductions every scored position starts with, shared by the evaluator
// (eval/perplexity.cpp), the base-logits codec (eval/logits_codec.cpp) and the backends'
// eval_token_stats (backend/cpu/ops_eval.cpp), so that all of them round identically.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace samq {

// max, first argmax and log-sum-exp (max + log sum exp(l - max), the sum in double).
struct ArgmaxLse {
  float max = 0;
  int32_t argmax = 0;
  float lse = 0;
};
inline ArgmaxLse argmax_lse(const float* logits, int64_t n) {
  ArgmaxLse r;
  r.max = logits[0];
  for (int64_t i = 1; i < n; ++i)
    if (logits[i] > r.max) {
      r.max = logits[i];
      r.argmax = int32_t(i);
    }
  double sum_exp = 0;
  for (int64_t i = 0; i < n; ++i) sum_exp += std::exp(logits[i] - r.max);
  r.lse = r.max + float(std::log(sum_exp));
  return r;
}

// The 16-bit log-probability code range of one distribution, as llama-perplexity stores its base
// (ggml-formats.md §6.2): logits within 16 of the max map to codes 1..65535 over [lo, max];
// code c stands for log-prob scale * c + min_log_prob.
struct DistCodeRange {
  float lo = 0, scale = 0, min_log_prob = 0;
};
inline DistCodeRange dist_code_range(const float* logits, int64_t n) {
  float mx = logits[0], mn = logits[0];
  for (int64_t i = 1; i < n; ++i) {
    mx = std::max(mx, logits[i]);
    mn = std::min(mn, logits[i]);
  }
  mn = std::max(mn, mx - 16.0f);
  double sum_exp = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_exp += std::exp(logits[i] - mx);
  const float lse = float(std::log(sum_exp));
  DistCodeRange r;
  r.lo = mn;
  r.min_log_prob = mn - mx - lse;
  r.scale = (mx - mn) / 65535.0f;
  return r;
}

}  // namespace samq
