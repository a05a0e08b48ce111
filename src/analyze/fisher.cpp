// Sensitivity accumulators (analyze/fisher.h).
#include "analyze/fisher.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "backend/ops_backward.h"
#include "core/error.h"
#include "core/parallel.h"
#include "model/tensor_names.h"

namespace samq {

double uniform_hash(uint64_t seed, uint64_t a, uint64_t b) {
  auto mix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  const uint64_t h = mix(mix(mix(seed) ^ a) ^ b);
  return double(h >> 11) * (1.0 / 9007199254740992.0);
}

SensitivityAccumulator::SensitivityAccumulator(const Model& m, const Ops& ops, FisherOptions o)
    : m_(m), ops_(ops), opt_(o) {
  mg_ = std::make_unique<ModelGradient>(m, ops);
  grads_ = make_gradient_buffers(m.weights);
  const Tensor* head = &m.weights.lm_head();
  for_each_tensor(m.weights, [&](const Tensor& t) {
    TensorStats s;
    s.name = t.name;
    const auto parts = parse_gguf_name(t.name);
    s.kind = parts.kind;
    s.layer = parts.layer;
    s.rows = t.rows;
    s.cols = t.cols;
    s.embedding = &t == &m.weights.token_embd;
    s.linear = t.rows > 1 && !s.embedding;
    if (&t == head) s.linear = true;  // tied: token_embd is also the output head
    stats_.push_back(std::move(s));
  });
  for (auto& s : stats_) {
    if (opt_.full)
      for (int k = 0; k < 2; ++k) s.g2[k].assign(static_cast<size_t>(s.rows * s.cols), 0.0f);
    if (s.linear) {
      for (int k = 0; k < 2; ++k) s.row_sq[k].assign(static_cast<size_t>(s.rows), 0.0);
      s.col_sq.assign(static_cast<size_t>(s.cols), 0.0);
    }
    if (s.embedding && !s.linear) {  // (tied embeddings use the output head's factors)
      for (int k = 0; k < 2; ++k) s.row_sq[k].assign(static_cast<size_t>(s.cols), 0.0);
      s.row_count.assign(static_cast<size_t>(s.rows), 0.0);
    }
  }
}

SensitivityAccumulator::~SensitivityAccumulator() = default;

const TensorStats* SensitivityAccumulator::find(const std::string& name) const {
  for (const auto& s : stats_)
    if (s.name == name) return &s;
  return nullptr;
}

namespace {

// sum over rows t of v[t, j]^2 into acc[j], in token order
void add_col_sq(const float* v, int64_t n, int64_t w, double* acc) {
  parallel_for(w, 64, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      double s = 0;
      for (int64_t t = 0; t < n; ++t) s += double(v[t * w + j]) * v[t * w + j];
      acc[j] += s;
    }
  });
}

}  // namespace

void SensitivityAccumulator::add_chunk(std::span<const int32_t> tokens, int64_t chunk_index) {
  const int64_t n = int64_t(tokens.size()), V = m_.hparams.n_vocab;
  if (n < 2) fail("calibration chunk {} has {} tokens (need at least 2)", chunk_index, n);
  std::unordered_map<std::string, TensorStats*> by_name;
  for (auto& s : stats_) by_name[s.name] = &s;

  const auto& logits = mg_->forward(tokens);
  std::vector<float> dl(static_cast<size_t>(n * V)), probs(static_cast<size_t>(n * V));
  const int64_t from = std::clamp<int64_t>(opt_.loss_from, 0, n - 2);
  const int64_t T = n - 1 - from;
  const float scale = 1.0f;  // chunk-sum loss; per-token normalization happens at use

  for (int k = 0; k < 2; ++k) {
    std::vector<int32_t> labels(static_cast<size_t>(n), -1);
    if (k == kEmpirical) {
      for (int64_t t = from; t + 1 < n; ++t) labels[t] = tokens[t + 1];
      loss_sum_ += softmax_cross_entropy_backward(ops_, logits.data(), labels.data(), n, V, scale,
                                                  dl.data(), probs.data());
    } else {
      for (int64_t t = from; t + 1 < n; ++t)
        labels[t] = sample_label(probs.data() + t * V, V, uniform_hash(opt_.seed, uint64_t(chunk_index), uint64_t(t)));
      softmax_cross_entropy_backward(ops_, logits.data(), labels.data(), n, V, scale, dl.data());
    }
    zero_gradients(grads_);
    BackwardHooks hooks;
    hooks.on_linear = [&](const Tensor& w, const float* x, const float* dy, int64_t rows) {
      TensorStats* s = by_name.at(w.name);
      add_col_sq(dy, rows, w.rows, s->row_sq[k].data());
      if (k == kEmpirical) {
        add_col_sq(x, rows, w.cols, s->col_sq.data());
        s->n_rows_seen += rows;
      }
    };
    hooks.on_embedding = [&](const Tensor& w, const int32_t* ids, const float* dy, int64_t rows) {
      TensorStats* s = by_name.at(w.name);
      if (s->linear) return;
      add_col_sq(dy, rows, w.cols, s->row_sq[k].data());
      if (k == kEmpirical) {
        for (int64_t t = 0; t < rows; ++t) s->row_count[ids[t]] += 1;
        s->n_rows_seen += rows;
      }
    };
    mg_->backward(dl.data(), &grads_, &hooks);
    // per-tensor reductions of the chunk gradient
    size_t ti = 0;
    for_each_tensor(grads_, [&](const Tensor& g) {
      TensorStats& s = stats_[ti++];
      const float* gp = reinterpret_cast<const float*>(g.data);
      const int64_t ne = g.n_elements();
      if (k == kEmpirical) {
        const int64_t nchunk = (ne + 65535) / 65536;
        std::vector<double> part(static_cast<size_t>(nchunk), 0.0);
        parallel_for(nchunk, 1, [&](int64_t b, int64_t e) {
          for (int64_t c = b; c < e; ++c) {
            double acc = 0;
            for (int64_t i = c * 65536; i < std::min(ne, (c + 1) * 65536); ++i) acc += double(gp[i]) * gp[i];
            part[c] = acc;
          }
        });
        double ss = 0;
        for (double p : part) ss += p;
        s.grad_norm_sum += std::sqrt(ss);
      }
      if (opt_.full) {
        float* f = s.g2[k].data();
        parallel_for(ne, 1 << 16, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) f[i] += gp[i] * gp[i];
        });
      }
    });
  }
  n_chunks_ += 1;
  n_tokens_ += n;
  n_loss_ += T;
}

void SensitivityAccumulator::fisher_row(const TensorStats& s, int labels, bool factored, int64_t r,
                                        float* out) const {
  const double norm = n_loss_ > 0 ? 1.0 / double(n_loss_) : 0.0;
  if (!factored) {
    if (s.g2[labels].empty()) fail("{}: the full Fisher was not kept (analysis ran factored)", s.name);
    const float* g = s.g2[labels].data() + r * s.cols;
    for (int64_t i = 0; i < s.cols; ++i) out[i] = float(g[i] * norm);
    return;
  }
  const double rows_seen = double(std::max<int64_t>(1, s.n_rows_seen));
  if (s.embedding && !s.linear) {
    // F[v, i] ~ count_v * mean_t(dy_i^2)
    const double c = s.row_count[r] * norm / rows_seen;
    for (int64_t i = 0; i < s.cols; ++i) out[i] = float(c * s.row_sq[labels][i]);
    return;
  }
  if (!s.linear) {  // norms and biases: no factored form; use the full one if kept
    if (!s.g2[labels].empty()) return fisher_row(s, labels, false, r, out);
    for (int64_t i = 0; i < s.cols; ++i) out[i] = 0.0f;
    return;
  }
  // F[j, i] ~ sum_t dy_j^2 * sum_t x_i^2 / rows_seen, per scored token
  const double rj = s.row_sq[labels][r] * norm / rows_seen;
  for (int64_t i = 0; i < s.cols; ++i) out[i] = float(rj * s.col_sq[i]);
}

double SensitivityAccumulator::fisher_trace(const TensorStats& s, int labels) const {
  const bool factored = s.g2[labels].empty();
  std::vector<float> row(static_cast<size_t>(s.cols));
  double tr = 0;
  for (int64_t r = 0; r < s.rows; ++r) {
    fisher_row(s, labels, factored, r, row.data());
    for (float v : row) tr += v;
  }
  return tr;
}

std::vector<float> SensitivityAccumulator::imatrix(const TensorStats& s) const {
  if (s.col_sq.empty() || s.n_rows_seen == 0) return {};
  std::vector<float> v(static_cast<size_t>(s.cols));
  for (int64_t i = 0; i < s.cols; ++i) v[i] = float(s.col_sq[i] / double(s.n_rows_seen));
  return v;
}

}  // namespace samq
