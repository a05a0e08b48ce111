// Scalar reference implementation of the op table (backend/ops.h): plain loops in float32 with
// double accumulation where a sum runs over a whole row, written to be read and to serve as
// the oracle for the fast CPU path and any future CUDA backend.
#include <cmath>
#include <vector>

#include "backend/cpu/act_quant.h"
#include "backend/ops.h"
#include "core/error.h"
#include "core/fp16.h"
#include "quant/quantize.h"

namespace samq {

void dequantize_weight_row(const WeightView& w, int64_t r, float* out) {
  if (r < 0 || r >= w.rows) fail("weight row {} out of range (rows {})", r, w.rows);
  const uint8_t* p = static_cast<const uint8_t*>(w.data) + r * w.row_bytes;
  switch (w.type) {
    case GgmlType::F32:
      for (int64_t i = 0; i < w.cols; ++i) out[i] = reinterpret_cast<const float*>(p)[i];
      return;
    case GgmlType::F16:
      for (int64_t i = 0; i < w.cols; ++i)
        out[i] = fp16_to_f32(reinterpret_cast<const uint16_t*>(p)[i]);
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < w.cols; ++i)
        out[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(p)[i]);
      return;
    default:
      dequantize_row(w.type, p, out, w.cols);
  }
}

std::vector<float> rope_inv_freq(const RopeParams& p) {
  std::vector<float> inv(p.n_rot / 2);
  for (int64_t i = 0; i < p.n_rot / 2; ++i) {
    double f = double(p.freq_scale) * std::pow(double(p.theta), -2.0 * double(i) / double(p.n_rot));
    if (p.freq_factors) f /= p.freq_factors[i];
    float v = float(f);
    if (p.inv_freq_type == GgmlType::F16) v = fp16_to_f32(f32_to_fp16(v));
    if (p.inv_freq_type == GgmlType::BF16) v = bf16_to_f32(f32_to_bf16(v));
    inv[i] = v;
  }
  return inv;
}

namespace {

class ReferenceOps final : public Ops {
 public:
  const char* name() const override { return "reference"; }

  // (n, cols) x (rows, cols)^T -> (n, rows)
  void matmul(const float* x_in, int64_t n, const WeightView& w, const float* bias,
              float* y) const override {
    std::vector<float> xr(n * w.cols);
    for (int64_t t = 0; t < n; ++t)
      cpu::round_activations((w.ggml_act_rounding ? cpu::act_type_for(w.type) : cpu::ActType::F32), x_in + t * w.cols, &xr[t * w.cols], w.cols);
    const float* x = xr.data();
    std::vector<float> row(w.cols);
    for (int64_t r = 0; r < w.rows; ++r) {
      dequantize_weight_row(w, r, row.data());
      for (int64_t t = 0; t < n; ++t) {
        double s = 0;
        const float* xt = x + t * w.cols;
        for (int64_t c = 0; c < w.cols; ++c) s += double(xt[c]) * double(row[c]);
        y[t * w.rows + r] = float(s) + (bias ? bias[r] : 0.0f);
      }
    }
  }

  void get_rows(const WeightView& w, const int32_t* ids, int64_t n, float* out) const override {
    for (int64_t t = 0; t < n; ++t) {
      if (ids[t] < 0 || ids[t] >= w.rows)
        fail("token id {} out of range (vocabulary of {} rows)", ids[t], w.rows);
      dequantize_weight_row(w, ids[t], out + t * w.cols);
    }
  }

  // y = x * rstd * weight, rstd = 1/sqrt(mean(x^2) + eps)
  void rms_norm(const float* x, int64_t n, int64_t d, const float* weight, float eps, float* y,
                float* rstd_out) const override {
    for (int64_t t = 0; t < n; ++t) {
      double ss = 0;
      for (int64_t i = 0; i < d; ++i) ss += double(x[t * d + i]) * x[t * d + i];
      const float rstd = float(1.0 / std::sqrt(ss / double(d) + double(eps)));
      if (rstd_out) rstd_out[t] = rstd;
      for (int64_t i = 0; i < d; ++i)
        y[t * d + i] = x[t * d + i] * rstd * (weight ? weight[i] : 1.0f);
    }
  }

  // theta_i = pos * inv_freq[i], inv_freq[i] = freq_scale * base^(-2i/n_rot) / freq_factor[i]
  // normal: rotate (x[2i], x[2i+1]); neox: rotate (x[i], x[i + n_rot/2]).
  void rope(float* x, int64_t n, int64_t n_head, int64_t head_dim, const int32_t* pos,
            const RopeParams& p) const override {
    const int64_t half = p.n_rot / 2;
    const std::vector<float> inv = rope_inv_freq(p);
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t h = 0; h < n_head; ++h) {
        float* v = x + (t * n_head + h) * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const double th = double(pos[t]) * double(inv[i]);
          const float c = float(std::cos(th)), s = float(std::sin(th));
          const int64_t a = p.neox ? i : 2 * i, b = p.neox ? i + half : 2 * i + 1;
          const float x0 = v[a], x1 = v[b];
          v[a] = x0 * c - x1 * s;
          v[b] = x0 * s + x1 * c;
        }
      }
    }
  }

  // out[t, h] = sum_j softmax_j(scale * q[t,h] . k[j,h/g]) v[j,h/g], first_key(pos[t]) <= j <= pos[t]
  void attention(const AttentionArgs& a) const override {
    const int64_t hd = a.head_dim, group = a.n_head / a.n_head_kv;
    const int64_t qw = a.n_head * hd, kw = a.n_head_kv * hd;
    std::vector<double> sc(a.n_kv);
    for (int64_t t = 0; t < a.n_tokens; ++t) {
      const int64_t last = std::min<int64_t>(a.pos[t], a.n_kv - 1);
      const int64_t lo = attention_first_key(a.pos[t], a.window);
      for (int64_t h = 0; h < a.n_head; ++h) {
        const float* q = a.q + t * qw + h * hd;
        const int64_t hk = h / group;
        double mx = -INFINITY;
        for (int64_t j = lo; j <= last; ++j) {
          double s = 0;
          for (int64_t i = 0; i < hd; ++i) s += double(q[i]) * a.k[j * kw + hk * hd + i];
          sc[j] = s * a.scale;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (int64_t j = lo; j <= last; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
        float* o = a.out + t * qw + h * hd;
        for (int64_t i = 0; i < hd; ++i) {
          double acc = 0;
          for (int64_t j = lo; j <= last; ++j) acc += sc[j] / sum * a.v[j * kw + hk * hd + i];
          o[i] = float(acc);
        }
        if (a.probs) {
          float* pr = a.probs + (h * a.n_tokens + t) * a.n_kv;
          for (int64_t j = 0; j < a.n_kv; ++j) pr[j] = j >= lo && j <= last ? float(sc[j] / sum) : 0.0f;
        }
      }
    }
  }

  void swiglu(const float* gate, const float* up, int64_t n, float* y) const override {
    for (int64_t i = 0; i < n; ++i) {
      const float g = gate[i];
      y[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  }

  void softmax(float* x, int64_t n, int64_t d) const override {
    for (int64_t t = 0; t < n; ++t) {
      float* r = x + t * d;
      float mx = -INFINITY;
      for (int64_t i = 0; i < d; ++i) mx = std::max(mx, r[i]);
      double sum = 0;
      for (int64_t i = 0; i < d; ++i) sum += (r[i] = std::exp(r[i] - mx));
      for (int64_t i = 0; i < d; ++i) r[i] = float(r[i] / sum);
    }
  }

  void add(const float* a, const float* b, int64_t n, float* y) const override {
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
  }
};

}  // namespace

const Ops& reference_ops() {
  static const ReferenceOps ops;
  return ops;
}

}  // namespace samq
