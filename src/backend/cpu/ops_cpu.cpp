// Fast CPU implementation of the op table (backend/ops.h).
// - matmul, many tokens (prefill, evaluation): weight rows are dequantized tile by tile into
//   f32 (64 rows at a time, in parallel over tiles) and multiplied with OpenBLAS sgemm; the
//   dequantization is amortized over all tokens, and sgemm runs near the machine's peak.
// - matmul, few tokens (decode): rows in parallel, each dequantized once and dotted with every
//   token by the AVX-512/AVX2 kernel of simd.h.
// - attention: parallel over (token, head); scores by SIMD dot products, values by axpy.
// Every op is tested against reference_ops() in tests/backend/.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/quant_dot.h"
#include "backend/cpu/simd.h"
#include "backend/ops.h"
#include "core/error.h"
#include "core/parallel.h"

namespace samq {
namespace {

constexpr int64_t kSgemmMinTokens = 8;  // below this, row-wise dot products win
constexpr int64_t kTileRows = 64;

// Thread-local scratch that only grows.
float* scratch(std::vector<float>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(n);
  return v.data();
}

class CpuOps final : public Ops {
 public:
  const char* name() const override { return "cpu"; }

  // (n, cols) x (rows, cols)^T -> (n, rows)
  void matmul(const float* x_in, int64_t n, const WeightView& w, const float* bias,
              float* y) const override {
    const int64_t cols = w.cols;
    const cpu::ActType at = (w.ggml_act_rounding ? cpu::act_type_for(w.type) : cpu::ActType::F32);
    static thread_local std::vector<float> xbuf;
    const float* x = x_in;
    if (at != cpu::ActType::F32) {
      float* xr = scratch(xbuf, n * cols);
      parallel_for(n, 8, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) cpu::round_activations(at, x_in + t * cols, xr + t * cols, cols);
      });
      x = xr;
    }
    if (n >= kSgemmMinTokens) {
      // Tiles of kTileRows rows whatever the thread count, so results do not depend on it.
      parallel_for(w.rows, kTileRows, [&](int64_t b0, int64_t b1) {
        static thread_local std::vector<float> buf;
        for (int64_t r0 = b0; r0 < b1; r0 += kTileRows) {
          const int64_t r1 = std::min(b1, r0 + kTileRows);
          const float* tile;
          if (w.type == GgmlType::F32) {
            tile = reinterpret_cast<const float*>(static_cast<const uint8_t*>(w.data) + r0 * w.row_bytes);
          } else {
            float* t = scratch(buf, (r1 - r0) * cols);
            for (int64_t r = r0; r < r1; ++r) dequantize_weight_row(w, r, t + (r - r0) * cols);
            tile = t;
          }
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(r1 - r0), int(cols), 1.0f,
                      x, int(cols), tile, int(cols), 0.0f, y + r0, int(w.rows));
          if (bias)
            for (int64_t t = 0; t < n; ++t)
              for (int64_t r = r0; r < r1; ++r) y[t * w.rows + r] += bias[r];
        }
      });
      return;
    }
    if ((w.type == GgmlType::Q4_K || w.type == GgmlType::Q6_K) && at == cpu::ActType::Q8_K) {
      // Decode: fused integer dot with Q8_K activations (no f32 weight row).
      static thread_local std::vector<block_q8_K> xq;
      const int64_t nb = cols / QK_K;
      if (int64_t(xq.size()) < n * nb) xq.resize(n * nb);
      for (int64_t t = 0; t < n; ++t) cpu::quantize_row_q8_K(x_in + t * cols, xq.data() + t * nb, cols);
      const block_q8_K* xb = xq.data();
      const bool q4 = w.type == GgmlType::Q4_K;
      parallel_for(w.rows, 16, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const uint8_t* wr = static_cast<const uint8_t*>(w.data) + r * w.row_bytes;
          for (int64_t t = 0; t < n; ++t)
            y[t * w.rows + r] =
                (q4 ? cpu::dot_q4_K_q8_K(reinterpret_cast<const block_q4_K*>(wr), xb + t * nb, cols)
                    : cpu::dot_q6_K_q8_K(reinterpret_cast<const block_q6_K*>(wr), xb + t * nb, cols)) +
                (bias ? bias[r] : 0.0f);
        }
      });
      return;
    }
    if (w.type == GgmlType::Q8_0 && at == cpu::ActType::Q8_0) {
      static thread_local std::vector<block_q8_0> xq;
      const int64_t nb = cols / QK8_0;
      if (int64_t(xq.size()) < n * nb) xq.resize(n * nb);
      for (int64_t t = 0; t < n; ++t) cpu::quantize_row_q8_0(x_in + t * cols, xq.data() + t * nb, cols);
      const block_q8_0* xb = xq.data();
      parallel_for(w.rows, 16, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const auto* wr = reinterpret_cast<const block_q8_0*>(static_cast<const uint8_t*>(w.data) + r * w.row_bytes);
          for (int64_t t = 0; t < n; ++t)
            y[t * w.rows + r] = cpu::dot_q8_0_q8_0(wr, xb + t * nb, cols) + (bias ? bias[r] : 0.0f);
        }
      });
      return;
    }
    parallel_for(w.rows, 16, [&](int64_t r0, int64_t r1) {
      static thread_local std::vector<float> buf;
      float* row = scratch(buf, cols);
      for (int64_t r = r0; r < r1; ++r) {
        const float* wr;
        if (w.type == GgmlType::F32) {
          wr = reinterpret_cast<const float*>(static_cast<const uint8_t*>(w.data) + r * w.row_bytes);
        } else {
          dequantize_weight_row(w, r, row);
          wr = row;
        }
        for (int64_t t = 0; t < n; ++t)
          y[t * w.rows + r] = cpu::dot_f32(x + t * cols, wr, cols) + (bias ? bias[r] : 0.0f);
      }
    });
  }

  void get_rows(const WeightView& w, const int32_t* ids, int64_t n, float* out) const override {
    for (int64_t t = 0; t < n; ++t)
      if (ids[t] < 0 || ids[t] >= w.rows)
        fail("token id {} out of range (vocabulary of {} rows)", ids[t], w.rows);
    parallel_for(n, 8, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) dequantize_weight_row(w, ids[t], out + t * w.cols);
    });
  }

  void rms_norm(const float* x, int64_t n, int64_t d, const float* weight, float eps, float* y,
                float* rstd_out) const override {
    for (int64_t t = 0; t < n; ++t) {
      const float* xt = x + t * d;
      float* yt = y + t * d;
      const float ss = cpu::dot_f32(xt, xt, d);
      const float rstd = 1.0f / std::sqrt(ss / float(d) + eps);
      if (rstd_out) rstd_out[t] = rstd;
      if (weight)
        for (int64_t i = 0; i < d; ++i) yt[i] = xt[i] * rstd * weight[i];
      else
        for (int64_t i = 0; i < d; ++i) yt[i] = xt[i] * rstd;
    }
  }

  void rope(float* x, int64_t n, int64_t n_head, int64_t head_dim, const int32_t* pos,
            const RopeParams& p) const override {
    const int64_t half = p.n_rot / 2;
    const std::vector<float> inv = rope_inv_freq(p);
    parallel_for(n, 16, [&](int64_t t0, int64_t t1) {
      std::vector<float> cs(half), sn(half);
      for (int64_t t = t0; t < t1; ++t) {
        for (int64_t i = 0; i < half; ++i) {
          const double th = double(pos[t]) * double(inv[i]);
          cs[i] = float(std::cos(th));
          sn[i] = float(std::sin(th));
        }
        for (int64_t h = 0; h < n_head; ++h) {
          float* v = x + (t * n_head + h) * head_dim;
          for (int64_t i = 0; i < half; ++i) {
            const int64_t a = p.neox ? i : 2 * i, b = p.neox ? i + half : 2 * i + 1;
            const float x0 = v[a], x1 = v[b];
            v[a] = x0 * cs[i] - x1 * sn[i];
            v[b] = x0 * sn[i] + x1 * cs[i];
          }
        }
      }
    });
  }

  void attention(const AttentionArgs& a) const override {
    const int64_t hd = a.head_dim, group = a.n_head / a.n_head_kv;
    const int64_t qw = a.n_head * hd, kw = a.n_head_kv * hd;
    parallel_for(a.n_tokens * a.n_head, 4, [&](int64_t i0, int64_t i1) {
      static thread_local std::vector<float> buf;
      float* sc = scratch(buf, a.n_kv);
      for (int64_t it = i0; it < i1; ++it) {
        const int64_t t = it / a.n_head, h = it % a.n_head, hk = h / group;
        const int64_t last = std::min<int64_t>(a.pos[t], a.n_kv - 1);
        const float* q = a.q + t * qw + h * hd;
        float mx = -INFINITY;
        for (int64_t j = 0; j <= last; ++j) {
          sc[j] = cpu::dot_f32(q, a.k + j * kw + hk * hd, hd) * a.scale;
          mx = std::max(mx, sc[j]);
        }
        float sum = 0;
        for (int64_t j = 0; j <= last; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
        const float inv = 1.0f / sum;
        float* o = a.out + t * qw + h * hd;
        std::fill(o, o + hd, 0.0f);
        for (int64_t j = 0; j <= last; ++j) cpu::axpy_f32(sc[j] * inv, a.v + j * kw + hk * hd, o, hd);
        if (a.probs) {
          float* pr = a.probs + (h * a.n_tokens + t) * a.n_kv;
          for (int64_t j = 0; j < a.n_kv; ++j) pr[j] = j <= last ? sc[j] * inv : 0.0f;
        }
      }
    });
  }

  void swiglu(const float* gate, const float* up, int64_t n, float* y) const override {
    parallel_for(n, 1 << 14, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const float g = gate[i];
        y[i] = g / (1.0f + std::exp(-g)) * up[i];
      }
    });
  }

  void softmax(float* x, int64_t n, int64_t d) const override {
    parallel_for(n, 4, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        float* r = x + t * d;
        const float mx = *std::max_element(r, r + d);
        float sum = 0;
        for (int64_t i = 0; i < d; ++i) sum += (r[i] = std::exp(r[i] - mx));
        const float inv = 1.0f / sum;
        for (int64_t i = 0; i < d; ++i) r[i] *= inv;
      }
    });
  }

  void add(const float* a, const float* b, int64_t n, float* y) const override {
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
  }
};

}  // namespace

const Ops& cpu_ops() {
  static const CpuOps ops;
  return ops;
}

}  // namespace samq
