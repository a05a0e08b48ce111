// CPU implementation of the backward ops (backend/ops_backward.h). Matrix products go
// through OpenBLAS sgemm (deterministic for a fixed thread count and, for these shapes,
// across thread counts: sgemm never splits the reduction dimension); the elementwise parts
// are plain loops over core/parallel.h chunks whose boundaries do not depend on the thread
// count.
#include "backend/ops_backward.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "backend/gumbel.h"
#include "core/parallel.h"

namespace samq {

// (n, rows) dy, (n, cols) x, (rows, cols) w. Work is split into fixed tiles of 64 columns of
// dx and 64 rows of dW, each one single-threaded sgemm (OpenBLAS runs single-threaded inside
// our parallel region), so the result does not depend on the thread count.
constexpr int64_t kTile = 64;

void matmul_backward(const float* x, const float* dy, int64_t n, const float* w, int64_t rows,
                     int64_t cols, float* dx, float* dw, float* db) {
  if (n <= 0) return;
  // dx(n, c0:c1) += dy(n, rows) * w(rows, c0:c1)
  if (dx)
    parallel_for(cols, kTile, [&](int64_t b0, int64_t b1) {
      for (int64_t c0 = b0; c0 < b1; c0 += kTile) {
        const int64_t c1 = std::min(b1, c0 + kTile);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(c1 - c0), int(rows), 1.0f, dy,
                    int(rows), w + c0, int(cols), 1.0f, dx + c0, int(cols));
      }
    });
  // dw(r0:r1, cols) += dy(n, r0:r1)^T * x(n, cols)
  if (dw)
    parallel_for(rows, kTile, [&](int64_t b0, int64_t b1) {
      for (int64_t r0 = b0; r0 < b1; r0 += kTile) {
        const int64_t r1 = std::min(b1, r0 + kTile);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(r1 - r0), int(cols), int(n), 1.0f, dy + r0,
                    int(rows), x, int(cols), 1.0f, dw + r0 * cols, int(cols));
      }
    });
  if (db) bias_backward(dy, n, rows, db);
}

void bias_backward(const float* dy, int64_t n, int64_t d, float* db) {
  parallel_for(d, 256, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      double s = 0;
      for (int64_t t = 0; t < n; ++t) s += dy[t * d + i];
      db[i] += float(s);
    }
  });
}

void rms_norm_backward(const Ops& ops, const float* x, const float* dy, int64_t n, int64_t d,
                       const float* weight, float eps, float* dx, float* dweight) {
  // x_hat and rstd from the forward op itself (no weight: y = x_hat)
  std::vector<float> xhat(static_cast<size_t>(n * d)), rstd(static_cast<size_t>(n));
  ops.rms_norm(x, n, d, nullptr, eps, xhat.data(), rstd.data());
  if (dx) {
    parallel_for(n, 16, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const float* xh = xhat.data() + t * d;
        const float* g = dy + t * d;
        double dot = 0;
        for (int64_t i = 0; i < d; ++i) dot += double(g[i]) * (weight ? weight[i] : 1.0f) * xh[i];
        const float m = float(dot / double(d));
        float* o = dx + t * d;
        for (int64_t i = 0; i < d; ++i)
          o[i] += rstd[t] * (g[i] * (weight ? weight[i] : 1.0f) - xh[i] * m);
      }
    });
  }
  if (dweight) {
    parallel_for(d, 64, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        double s = 0;
        for (int64_t t = 0; t < n; ++t) s += double(dy[t * d + i]) * xhat[t * d + i];
        dweight[i] += float(s);
      }
    });
  }
}

void rope_backward(const Ops& ops, float* dx, int64_t n, int64_t n_head, int64_t head_dim,
                   const int32_t* pos, const RopeParams& p) {
  std::vector<int32_t> neg(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) neg[t] = -pos[t];
  ops.rope(dx, n, n_head, head_dim, neg.data(), p);
}

void attention_backward(const AttentionArgs& a, const float* probs, const float* dout, float* dq,
                        float* dk, float* dv) {
  const int64_t hd = a.head_dim, nt = a.n_tokens, nkv = a.n_kv;
  if (a.n_head_kv <= 0 || a.n_head % a.n_head_kv != 0)
    fail("attention_backward: n_head {} is not a multiple of n_head_kv {}", a.n_head, a.n_head_kv);
  const int64_t group = a.n_head / a.n_head_kv;
  const int64_t qw = a.n_head * hd, kw = a.n_head_kv * hd;
  // Heads run in parallel; each writes dK/dV contributions to its own buffer, reduced in head
  // order afterwards (deterministic for any thread count).
  std::vector<std::vector<float>> hk(static_cast<size_t>(a.n_head)), hv(static_cast<size_t>(a.n_head));
  parallel_for(a.n_head, 1, [&](int64_t hb, int64_t he) {
    std::vector<float> dp(static_cast<size_t>(nt * nkv));
    for (int64_t h = hb; h < he; ++h) {
      const int64_t g = h / group;
      const float* P = probs + h * nt * nkv;
      const float* dO = dout + h * hd;
      const float* V = a.v + g * hd;
      const float* K = a.k + g * hd;
      const float* Q = a.q + h * hd;
      // dV_h(nkv, hd) = P^T(nkv, nt) dO_h(nt, hd)
      if (dv) {
        hv[h].assign(static_cast<size_t>(nkv * hd), 0.0f);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(nkv), int(hd), int(nt), 1.0f, P, int(nkv), dO,
                    int(qw), 0.0f, hv[h].data(), int(hd));
      }
      if (!dq && !dk) continue;
      // dP(nt, nkv) = dO_h(nt, hd) V_g^T(hd, nkv)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(nt), int(nkv), int(hd), 1.0f, dO, int(qw), V,
                  int(kw), 0.0f, dp.data(), int(nkv));
      // dS = P * (dP - rowsum(P * dP)), scaled
      for (int64_t t = 0; t < nt; ++t) {
        const float* pr = P + t * nkv;
        float* r = dp.data() + t * nkv;
        double s = 0;
        for (int64_t j = 0; j < nkv; ++j) s += double(pr[j]) * r[j];
        for (int64_t j = 0; j < nkv; ++j) r[j] = a.scale * pr[j] * (r[j] - float(s));
      }
      // dQ_h(nt, hd) += dS(nt, nkv) K_g(nkv, hd)   (columns of head h only: no conflict)
      if (dq)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(nt), int(hd), int(nkv), 1.0f, dp.data(),
                    int(nkv), K, int(kw), 1.0f, dq + h * hd, int(qw));
      // dK_h(nkv, hd) = dS^T(nkv, nt) Q_h(nt, hd)
      if (dk) {
        hk[h].assign(static_cast<size_t>(nkv * hd), 0.0f);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(nkv), int(hd), int(nt), 1.0f, dp.data(),
                    int(nkv), Q, int(qw), 0.0f, hk[h].data(), int(hd));
      }
    }
  });
  for (int64_t h = 0; h < a.n_head; ++h) {
    const int64_t g = h / group;
    for (int64_t j = 0; j < nkv; ++j)
      for (int64_t i = 0; i < hd; ++i) {
        if (dk) dk[j * kw + g * hd + i] += hk[h][j * hd + i];
        if (dv) dv[j * kw + g * hd + i] += hv[h][j * hd + i];
      }
  }
}

void swiglu_backward(const float* gate, const float* up, const float* dy, int64_t n, float* dgate,
                     float* dup) {
  parallel_for(n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float g = gate[i];
      const float s = 1.0f / (1.0f + std::exp(-g));
      if (dgate) dgate[i] += dy[i] * up[i] * s * (1.0f + g * (1.0f - s));
      if (dup) dup[i] += dy[i] * g * s;
    }
  });
}

double softmax_cross_entropy_backward(const Ops& ops, const float* logits, const int32_t* labels,
                                      int64_t n, int64_t v, float scale, float* dlogits,
                                      float* probs_out) {
  std::vector<double> loss(static_cast<size_t>(n), 0.0);
  parallel_for(n, 8, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      float* d = dlogits + t * v;
      if (labels[t] < 0 && !probs_out) {
        std::fill(d, d + v, 0.0f);
        continue;
      }
      if (labels[t] >= v) fail("label {} at row {} out of range (vocabulary {})", labels[t], t, v);
      std::copy(logits + t * v, logits + (t + 1) * v, d);
      ops.softmax(d, 1, v);  // d = p
      if (probs_out) std::copy(d, d + v, probs_out + t * v);
      if (labels[t] < 0) {
        std::fill(d, d + v, 0.0f);
        continue;
      }
      // -log p[label] from the logits directly (log-sum-exp), precise for tiny p
      const float* l = logits + t * v;
      float mx = l[0];
      for (int64_t i = 1; i < v; ++i) mx = std::max(mx, l[i]);
      double se = 0;
      for (int64_t i = 0; i < v; ++i) se += std::exp(double(l[i]) - mx);
      loss[t] = scale * (std::log(se) + mx - l[labels[t]]);
      for (int64_t i = 0; i < v; ++i) d[i] *= scale;
      d[labels[t]] -= scale;
    }
  });
  double s = 0;
  for (double x : loss) s += x;
  return s;
}

void embedding_backward(const int32_t* ids, const float* dy, int64_t n, int64_t d, float* dE) {
  for (int64_t t = 0; t < n; ++t) {
    float* r = dE + int64_t(ids[t]) * d;
    const float* g = dy + t * d;
    for (int64_t i = 0; i < d; ++i) r[i] += g[i];
  }
}

}  // namespace samq

namespace samq {
int32_t gumbel_label(const float* logits, int64_t v, uint64_t key) {
  double best = -INFINITY;
  int32_t arg = 0;
  for (int64_t i = 0; i < v; ++i) {
    const double s = double(logits[i]) + gumbel_noise(key, uint64_t(i));
    if (s > best) {
      best = s;
      arg = int32_t(i);
    }
  }
  return arg;
}
}  // namespace samq

// ---- the table over host memory (backend/ops_backward.h: BackwardOps), for reference_ops()
// and cpu_ops(): the functions above plus the statistics of the analysis.
namespace samq {
namespace {

// Row r0..r1 of W as f32 (the forward weight in any type), into a reused per-thread buffer.
const float* weight_f32(const WeightView& w, std::vector<float>& scratch) {
  if (w.type == GgmlType::F32) return static_cast<const float*>(w.data);
  scratch.resize(size_t(w.rows * w.cols));
  parallel_for(w.rows, 64, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) dequantize_weight_row(w, r, scratch.data() + r * w.cols);
  });
  return scratch.data();
}

class HostBackwardOps final : public BackwardOps {
 public:
  HostBackwardOps(const Ops& fwd, const char* name) : fwd_(fwd), name_(name) {}
  const char* name() const override { return name_; }
  const Ops& ops() const override { return fwd_; }

  void matmul_backward(const float* x, const float* dy, int64_t n, const WeightView& w, float* dx, float* dw,
                       float* db) const override {
    static thread_local std::vector<float> scratch;
    const float* wf = dx ? weight_f32(w, scratch) : nullptr;
    samq::matmul_backward(x, dy, n, wf, w.rows, w.cols, dx, dw, db);
  }
  void rms_norm_backward(const float* x, const float* dy, int64_t n, int64_t d, const float* weight, float eps,
                         float* dx, float* dweight) const override {
    samq::rms_norm_backward(fwd_, x, dy, n, d, weight, eps, dx, dweight);
  }
  void rope_backward(float* dx, int64_t n, int64_t n_head, int64_t head_dim, const int32_t* pos,
                     const RopeParams& p) const override {
    samq::rope_backward(fwd_, dx, n, n_head, head_dim, pos, p);
  }
  void attention_backward(const AttentionArgs& a, const float* dout, float* dq, float* dk,
                          float* dv) const override {
    std::vector<float> probs(static_cast<size_t>(a.n_head * a.n_tokens * a.n_kv));
    std::vector<float> out(static_cast<size_t>(a.n_tokens * a.n_head * a.head_dim));
    AttentionArgs f = a;
    f.out = out.data();
    f.probs = probs.data();
    fwd_.attention(f);  // recompute the softmax weights
    samq::attention_backward(f, probs.data(), dout, dq, dk, dv);
  }
  void swiglu_backward(const float* gate, const float* up, const float* dy, int64_t n, float* dgate,
                       float* dup) const override {
    samq::swiglu_backward(gate, up, dy, n, dgate, dup);
  }
  double softmax_cross_entropy_backward(const float* logits, const int32_t* labels, int64_t n, int64_t v,
                                        float scale, float* dlogits, float* probs_out) const override {
    return samq::softmax_cross_entropy_backward(fwd_, logits, labels, n, v, scale, dlogits, probs_out);
  }
  void sample_labels(const float* logits, int64_t n, int64_t v, const int64_t* keys, int32_t* labels) const override {
    parallel_for(n, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) labels[t] = keys[t] < 0 ? -1 : gumbel_label(logits + t * v, v, uint64_t(keys[t]));
    });
  }
  void embedding_backward(const int32_t* ids, const float* dy, int64_t n, int64_t d, float* dE) const override {
    samq::embedding_backward(ids, dy, n, d, dE);
  }
  void bias_backward(const float* dy, int64_t n, int64_t d, float* db) const override {
    samq::bias_backward(dy, n, d, db);
  }

  void col_sq_accumulate(const float* v, int64_t n, int64_t w, double* acc) const override {
    parallel_for(w, 64, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        double s = 0;
        for (int64_t t = 0; t < n; ++t) s += double(v[t * w + j]) * v[t * w + j];
        acc[j] += s;
      }
    });
  }
  void sq_accumulate(const float* g, int64_t n, float* acc) const override {
    parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) acc[i] += g[i] * g[i];
    });
  }
  // Partial sums over fixed chunks of 65536, added in chunk order.
  double sum_sq(const float* g, int64_t n) const override {
    const int64_t nchunk = (n + 65535) / 65536;
    std::vector<double> part(static_cast<size_t>(nchunk), 0.0);
    parallel_for(nchunk, 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) {
        double acc = 0;
        for (int64_t i = c * 65536; i < std::min(n, (c + 1) * 65536); ++i) acc += double(g[i]) * g[i];
        part[c] = acc;
      }
    });
    double s = 0;
    for (double p : part) s += p;
    return s;
  }
  void xtx_accumulate(const float* x, int64_t n, int64_t cols, double* H) const override {
    // Double precision so that diag(H) matches the imatrix's double sums.
    static thread_local std::vector<double> xd;
    xd.assign(x, x + n * cols);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, int(cols), int(n), 1.0, xd.data(), int(cols), 1.0, H,
                int(cols));
  }

 private:
  const Ops& fwd_;
  const char* name_;
};

}  // namespace

void BackwardOps::sq_accumulate_sum(const float* g, int64_t n, float* acc, double* sum_out) const {
  if (sum_out) {
    const double s = sum_sq(g, n);
    ops().upload(sum_out, &s, sizeof s);
  }
  if (acc) sq_accumulate(g, n, acc);
}

void BackwardOps::xtx_mean(const double* H, int64_t cols, float count, float* out) const {
  std::vector<double> host;
  const double* h = H;
  if (!ops().host_memory()) {
    host.resize(size_t(cols * cols));
    ops().download(host.data(), H, host.size() * sizeof(double));
    h = host.data();
  }
  // Row blocks of kTile: the upper triangle is read tile by tile (a column walk thrashes).
  constexpr int64_t kTile = 64;
  parallel_for((cols + kTile - 1) / kTile, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t i0 = b0 * kTile; i0 < std::min(cols, b1 * kTile); i0 += kTile)
      for (int64_t j0 = 0; j0 < cols; j0 += kTile)
        for (int64_t i = i0; i < std::min(cols, i0 + kTile); ++i)
          for (int64_t j = j0; j < std::min(cols, j0 + kTile); ++j)
            out[i * cols + j] = float(h[std::min(i, j) * cols + std::max(i, j)]) / count;
  });
}

const BackwardOps& cpu_backward_ops() {
  static const HostBackwardOps b(cpu_ops(), "cpu");
  return b;
}
const BackwardOps& reference_backward_ops() {
  static const HostBackwardOps b(reference_ops(), "reference");
  return b;
}

}  // namespace samq
