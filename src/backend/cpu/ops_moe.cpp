// Mixture-of-experts ops of the op tables (backend/ops.h, backend/ops_backward.h) on host memory:
// the router (softmax + top-k + renormalisation), row gather and weighted scatter-add, and their
// gradients. These plain loops are both the reference and the CPU path: their cost is
// O(tokens x (n_expert + n_embd)) per layer, small beside the expert matmuls. Sums run in a fixed
// order (rows in the order given), so results do not depend on the thread count. A device
// backend that does not override them fails here, naming the op.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/ops.h"
#include "backend/ops_backward.h"
#include "core/error.h"

namespace samq {

namespace {

void need_host(const Ops& ops, const char* op) {
  if (!ops.host_memory()) fail("the {} backend does not implement the MoE op {} (mixture-of-experts models run on the CPU)", ops.name(), op);
}

// p = softmax(row) in float32 as ggml_soft_max (max subtracted, sum in double here).
void softmax_row(const float* x, int64_t d, float* p) {
  float mx = x[0];
  for (int64_t i = 1; i < d; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < d; ++i) {
    p[i] = std::exp(x[i] - mx);
    sum += p[i];
  }
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < d; ++i) p[i] *= inv;
}

}  // namespace

void Ops::moe_route(const float* logits, int64_t n, int64_t n_expert, int64_t k, bool norm, int32_t* ids,
                    float* weights) const {
  need_host(*this, "moe_route");
  if (k <= 0 || k > n_expert) fail("moe_route: {} experts used of {}", k, n_expert);
  std::vector<float> p(static_cast<size_t>(n_expert));
  std::vector<int32_t> order(static_cast<size_t>(n_expert));
  for (int64_t t = 0; t < n; ++t) {
    softmax_row(logits + t * n_expert, n_expert, p.data());
    for (int64_t e = 0; e < n_expert; ++e) order[size_t(e)] = int32_t(e);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int32_t a, int32_t b) { return p[size_t(a)] > p[size_t(b)] || (p[size_t(a)] == p[size_t(b)] && a < b); });
    double s = 0;
    for (int64_t j = 0; j < k; ++j) s += p[size_t(order[size_t(j)])];
    for (int64_t j = 0; j < k; ++j) {
      ids[t * k + j] = order[size_t(j)];
      const float w = p[size_t(order[size_t(j)])];
      weights[t * k + j] = norm ? float(double(w) / s) : w;
    }
  }
}

void Ops::gather_rows(const float* x, int64_t d, const int32_t* rows, int64_t n, float* out) const {
  need_host(*this, "gather_rows");
  for (int64_t i = 0; i < n; ++i) std::copy(x + rows[i] * d, x + (rows[i] + 1) * d, out + i * d);
}

void Ops::scatter_add_rows(const float* src, int64_t d, const int32_t* rows, const float* scale, int64_t n,
                           float* out) const {
  need_host(*this, "scatter_add_rows");
  for (int64_t i = 0; i < n; ++i) {
    float* o = out + rows[i] * d;
    const float* s = src + i * d;
    const float c = scale ? scale[i] : 1.0f;
    for (int64_t j = 0; j < d; ++j) o[j] += c * s[j];
  }
}

void BackwardOps::moe_route_backward(const float* logits, const int32_t* ids, const float* dweights, int64_t n,
                                     int64_t n_expert, int64_t k, bool norm, float* dlogits) const {
  need_host(ops(), "moe_route_backward");
  std::vector<float> p(static_cast<size_t>(n_expert));
  std::vector<double> dp(static_cast<size_t>(n_expert));
  for (int64_t t = 0; t < n; ++t) {
    softmax_row(logits + t * n_expert, n_expert, p.data());
    const int32_t* id = ids + t * k;
    const float* dw = dweights + t * k;
    std::fill(dp.begin(), dp.end(), 0.0);
    if (norm) {
      double s = 0, dot = 0;
      for (int64_t j = 0; j < k; ++j) s += p[size_t(id[j])];
      for (int64_t j = 0; j < k; ++j) dot += double(dw[j]) * (p[size_t(id[j])] / s);
      for (int64_t j = 0; j < k; ++j) dp[size_t(id[j])] += (dw[j] - dot) / s;
    } else {
      for (int64_t j = 0; j < k; ++j) dp[size_t(id[j])] += dw[j];
    }
    double pdp = 0;
    for (int64_t e = 0; e < n_expert; ++e) pdp += p[size_t(e)] * dp[size_t(e)];
    for (int64_t e = 0; e < n_expert; ++e) dlogits[t * n_expert + e] += float(p[size_t(e)] * (dp[size_t(e)] - pdp));
  }
}

void BackwardOps::scatter_add_rows_backward(const float* src, const float* dout, int64_t d, const int32_t* rows,
                                            const float* scale, int64_t n, float* dsrc, float* dscale) const {
  need_host(ops(), "scatter_add_rows_backward");
  for (int64_t i = 0; i < n; ++i) {
    const float* g = dout + rows[i] * d;
    const float c = scale ? scale[i] : 1.0f;
    if (dsrc)
      for (int64_t j = 0; j < d; ++j) dsrc[i * d + j] += c * g[j];
    if (dscale) {
      double s = 0;
      for (int64_t j = 0; j < d; ++j) s += double(src[i * d + j]) * double(g[j]);
      dscale[i] += float(s);
    }
  }
}

}  // namespace samq
