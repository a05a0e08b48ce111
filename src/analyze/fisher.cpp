// Sensitivity accumulators (analyze/fisher.h).
#include "analyze/fisher.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <unordered_map>

#include "backend/gumbel.h"
#include "core/error.h"
#include "core/parallel.h"
#include "model/tensor_names.h"

namespace samq {

uint64_t label_key(uint64_t seed, uint64_t a, uint64_t b) { return splitmix64(splitmix64(splitmix64(seed) ^ a) ^ b); }

SensitivityAccumulator::SensitivityAccumulator(const Model& m, const BackwardOps& bops, FisherOptions o)
    : SensitivityAccumulator(m, bops, o, false) {}

SensitivityAccumulator::SensitivityAccumulator(const Model& m, const BackwardOps& bops, FisherOptions o, bool streamed)
    : m_(m), bops_(bops), ops_(bops.ops()), opt_(o) {
  mg_ = std::make_unique<ModelGradient>(m, bops);
  if (!streamed) grads_ = GradientBuffers(m.weights, ops_);
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
    s.n_mat = t.n_mat;
    if (s.n_mat > 1) {
      s.mat_rows_seen.assign(size_t(s.n_mat), 0.0);
      s.mat_count.assign(size_t(s.n_mat), 0.0);
      s.filled.assign(size_t(s.n_mat), false);
    }
    s.linear = t.rows > 1 && !s.embedding;
    if (&t == head) s.linear = true;  // tied: token_embd is also the output head
    if (s.embedding && !s.linear) s.row_count.assign(static_cast<size_t>(s.rows), 0.0);
    stats_.push_back(std::move(s));
  });
  dev_.resize(stats_.size());
  if (!streamed)
    for (size_t i = 0; i < stats_.size(); ++i) open_tensor(i);
  dirty_ = true;
}

void SensitivityAccumulator::open_tensor(size_t i) {
  auto zeroed = [&](auto& b, int64_t n) {
    b = std::remove_reference_t<decltype(b)>(ops_, n);
    b.zero();
  };
  const TensorStats& s = stats_[i];
  DeviceStats& d = dev_[i];
  if (opt_.full)
    for (int k = 0; k < 2; ++k) zeroed(d.g2[k], s.rows * s.cols);
  if (s.linear) {
    for (int k = 0; k < 2; ++k) zeroed(d.row_sq[k], s.rows);
    zeroed(d.col_sq, s.n_mat * s.cols);
  }
  if (s.embedding && !s.linear)  // (tied embeddings use the output head's factors)
    for (int k = 0; k < 2; ++k) zeroed(d.row_sq[k], s.cols);
}

void SensitivityAccumulator::close_tensor(size_t i) {
  TensorStats& s = stats_[i];
  DeviceStats& d = dev_[i];
  for (int k = 0; k < 2; ++k) {
    if (!d.g2[k].empty()) s.g2[k] = d.g2[k].to_host();
    if (!d.row_sq[k].empty()) s.row_sq[k] = d.row_sq[k].to_host();
  }
  if (!d.col_sq.empty()) s.col_sq = d.col_sq.to_host();
  d = DeviceStats();
  fill_unrouted_experts(s);
}

void fill_unrouted_experts(TensorStats& s) {
  if (s.n_mat <= 1) return;
  const int64_t R = s.mat_rows(), C = s.cols;
  std::vector<int64_t> routed;
  for (int64_t e = 0; e < s.n_mat; ++e) {
    s.mat_count[size_t(e)] = s.mat_rows_seen[size_t(e)];
    s.filled[size_t(e)] = false;
    if (s.mat_rows_seen[size_t(e)] > 0) routed.push_back(e);
  }
  if (routed.empty() || int64_t(routed.size()) == s.n_mat) return;
  const double nr = double(routed.size());
  double mean_count = 0;
  for (int64_t e : routed) mean_count += s.mat_rows_seen[size_t(e)] / nr;
  // Sums scaled to the mean count: the filled expert's per-token statistics (sum / count) are the
  // mean of the routed experts' per-token statistics.
  auto fill = [&](auto& v, int64_t per, bool per_token) {
    if (v.empty()) return;
    std::vector<double> mean(size_t(per), 0.0);
    for (int64_t e : routed) {
      const double k = per_token ? mean_count / s.mat_rows_seen[size_t(e)] : 1.0;
      for (int64_t i = 0; i < per; ++i) mean[size_t(i)] += k * double(v[size_t(e * per + i)]) / nr;
    }
    for (int64_t e = 0; e < s.n_mat; ++e)
      if (s.mat_rows_seen[size_t(e)] == 0)
        for (int64_t i = 0; i < per; ++i) v[size_t(e * per + i)] = static_cast<std::decay_t<decltype(v[0])>>(mean[size_t(i)]);
  };
  // col_sq: per-token means averaged; row_sq: sums over routed tokens of dy^2, which the factored
  // Fisher divides by the count; g2 (full Fisher): a per-scored-token sum, averaged as is.
  fill(s.col_sq, C, true);
  for (int k = 0; k < 2; ++k) {
    fill(s.row_sq[k], R, true);
    fill(s.g2[k], R * C, false);
  }
  for (int64_t e = 0; e < s.n_mat; ++e)
    if (s.mat_rows_seen[size_t(e)] == 0) {
      s.mat_count[size_t(e)] = mean_count;
      s.filled[size_t(e)] = true;
    }
}

SensitivityAccumulator::~SensitivityAccumulator() = default;

void SensitivityAccumulator::sync() const {
  if (!dirty_) return;
  for (size_t i = 0; i < stats_.size(); ++i) {
    TensorStats& s = stats_[i];
    const DeviceStats& d = dev_[i];
    for (int k = 0; k < 2; ++k) {
      if (!d.g2[k].empty()) s.g2[k] = d.g2[k].to_host();
      if (!d.row_sq[k].empty()) s.row_sq[k] = d.row_sq[k].to_host();
    }
    if (!d.col_sq.empty()) s.col_sq = d.col_sq.to_host();
    fill_unrouted_experts(s);
  }
  dirty_ = false;
}

const std::vector<TensorStats>& SensitivityAccumulator::stats() const {
  sync();
  return stats_;
}

const TensorStats* SensitivityAccumulator::find(const std::string& name) const {
  sync();
  for (const auto& s : stats_)
    if (s.name == name) return &s;
  return nullptr;
}

double SensitivityAccumulator::dlogits(int k, std::span<const int32_t> tokens, int64_t chunk_index,
                                       const float* logits, float* dl) {
  const int64_t n = int64_t(tokens.size()), V = m_.hparams.n_vocab;
  int32_t* labels_b = labels_.reserve(ops_, n);
  const int64_t from = std::clamp<int64_t>(opt_.loss_from, 0, n - 2);
  const float scale = 1.0f;  // chunk-sum loss; per-token normalization happens at use
  if (k == kEmpirical) {
    std::vector<int32_t> labels(static_cast<size_t>(n), -1);
    for (int64_t t = from; t + 1 < n; ++t) labels[t] = tokens[t + 1];
    labels_.upload(labels.data(), n);
    return bops_.softmax_cross_entropy_backward(logits, labels_b, n, V, scale, dl, nullptr);
  }
  // labels drawn from the model's own distribution, keyed by (seed, chunk, position)
  std::vector<int64_t> keys(static_cast<size_t>(n), -1);
  for (int64_t t = from; t + 1 < n; ++t)
    keys[t] = int64_t(label_key(opt_.seed, uint64_t(chunk_index), uint64_t(t)) >> 1);
  keys_.reserve(ops_, n);
  keys_.upload(keys.data(), n);
  bops_.sample_labels(logits, n, V, keys_.data(), labels_b);
  bops_.softmax_cross_entropy_backward(logits, labels_b, n, V, scale, dl, nullptr);
  return 0.0;
}

BackwardHooks SensitivityAccumulator::hooks_for(int k, const std::unordered_map<std::string, size_t>& by_name) {
  BackwardHooks hooks;
  hooks.on_linear = [this, k, &by_name](const Tensor& w, const float* x, const float* dy, int64_t rows) {
    const size_t i = by_name.at(w.name);
    bops_.col_sq_accumulate(dy, rows, w.rows, dev_[i].row_sq[k].data());
    if (k == kEmpirical) {
      bops_.col_sq_accumulate(x, rows, w.cols, dev_[i].col_sq.data());
      stats_[i].n_rows_seen += rows;
    }
  };
  hooks.on_expert_linear = [this, k, &by_name](const Tensor& w, int e, const float* x, const float* dy,
                                               int64_t rows) {
    const size_t i = by_name.at(w.name);
    const int64_t R = w.mat_rows();
    bops_.col_sq_accumulate(dy, rows, R, dev_[i].row_sq[k].data() + e * R);
    if (k == kEmpirical) {
      bops_.col_sq_accumulate(x, rows, w.cols, dev_[i].col_sq.data() + e * w.cols);
      stats_[i].n_rows_seen += rows;
      stats_[i].mat_rows_seen[size_t(e)] += double(rows);
    }
  };
  hooks.on_embedding = [this, k, &by_name](const Tensor& w, const int32_t* ids, const float* dy, int64_t rows) {
    const size_t i = by_name.at(w.name);
    TensorStats& s = stats_[i];
    if (s.linear) return;
    bops_.col_sq_accumulate(dy, rows, w.cols, dev_[i].row_sq[k].data());
    if (k == kEmpirical) {
      for (int64_t t = 0; t < rows; ++t) s.row_count[ids[t]] += 1;
      s.n_rows_seen += rows;
    }
  };
  return hooks;
}

// Per-tensor reductions of the chunk gradient (every tensor with a buffer in g, except `skip`).
void SensitivityAccumulator::reduce_gradients(int k, GradientBuffers& g,
                                              const std::unordered_map<std::string, size_t>& by_name,
                                              const std::string& skip) {
  // One fused pass per tensor (g2 += g*g and the sum of squares), the sums read back once.
  const int64_t n = int64_t(g.entries().size());
  double* sums = k == kEmpirical ? sums_.reserve(ops_, std::max<int64_t>(n, 1)) : nullptr;
  for (int64_t j = 0; j < n; ++j) {
    auto& e = g.entries()[size_t(j)];
    if (e.name == skip) continue;
    DeviceStats& d = dev_[by_name.at(e.name)];
    float* acc = opt_.full ? d.g2[k].data() : nullptr;
    if (acc || sums) bops_.sq_accumulate_sum(e.g.data(), e.rows * e.cols, acc, sums ? sums + j : nullptr);
  }
  if (!sums) return;
  std::vector<double> host(static_cast<size_t>(n));
  sums_.download(host.data(), n);
  for (int64_t j = 0; j < n; ++j) {
    const auto& e = g.entries()[size_t(j)];
    if (e.name != skip) stats_[by_name.at(e.name)].grad_norm_sum += std::sqrt(host[size_t(j)]);
  }
}

void SensitivityAccumulator::add_chunk(std::span<const int32_t> tokens, int64_t chunk_index) {
  const int64_t n = int64_t(tokens.size()), V = m_.hparams.n_vocab;
  if (n < 2) fail("calibration chunk {} has {} tokens (need at least 2)", chunk_index, n);
  if (grads_.entries().empty()) fail("sensitivity: add_chunk on a streamed accumulator (use run_streamed)");
  std::unordered_map<std::string, size_t> by_name;
  for (size_t i = 0; i < stats_.size(); ++i) by_name[stats_[i].name] = i;
  dirty_ = true;

  const float* logits = mg_->forward(tokens);
  float* dl = dl_.reserve(ops_, n * V);
  const int64_t from = std::clamp<int64_t>(opt_.loss_from, 0, n - 2);
  const int64_t T = n - 1 - from;
  for (int k = 0; k < 2; ++k) {
    const double loss = dlogits(k, tokens, chunk_index, logits, dl);
    if (k == kEmpirical) loss_sum_ += loss;
    grads_.zero();
    const BackwardHooks hooks = hooks_for(k, by_name);
    mg_->backward(dl, &grads_, &hooks);
    reduce_gradients(k, grads_, by_name);
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
  if (s.n_mat > 1) {  // expert e's rows: its own routed tokens' sums
    const int64_t e = r / s.mat_rows();
    const double cnt = s.mat_count[size_t(e)];
    const double rj = cnt > 0 ? s.row_sq[labels][r] * norm / cnt : 0.0;
    const double* col = s.col_sq.data() + e * s.cols;
    for (int64_t i = 0; i < s.cols; ++i) out[i] = float(rj * col[i]);
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
  if (s.n_mat > 1) {
    std::vector<float> v(static_cast<size_t>(s.n_mat * s.cols), 1.0f);
    for (int64_t e = 0; e < s.n_mat; ++e) {
      const double c = s.mat_rows_seen[size_t(e)];
      if (c > 0)
        for (int64_t i = 0; i < s.cols; ++i) v[size_t(e * s.cols + i)] = float(s.col_sq[size_t(e * s.cols + i)] / c);
    }
    return v;
  }
  std::vector<float> v(static_cast<size_t>(s.cols));
  for (int64_t i = 0; i < s.cols; ++i) v[i] = float(s.col_sq[i] / double(s.n_rows_seen));
  return v;
}

}  // namespace samq
