// Q4_K and Q5_K (affine, 8 sub-blocks of 32, 6-bit scales and mins packed in 12 bytes) and
// Q6_K (symmetric, 16 sub-blocks of 16, int8 scales), ggml-formats.md §2.6-2.8 and §3.3.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "quant/quants_ref.h"
#include "quant/search.h"

namespace samq {
using namespace quant_detail;

namespace {

// Packs the 6-bit scale ls and min lm of sub-block j (inverse of get_scale_min_k4).
void put_scale_min_k4(uint8_t* s, int j, uint8_t ls, uint8_t lm) {
  if (j < 4) {
    s[j] = ls;
    s[j + 4] = lm;
  } else {
    s[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
    s[j - 4] |= uint8_t((ls >> 4) << 6);
    s[j] |= uint8_t((lm >> 4) << 6);
  }
}

// Second pass of Q4_K/Q5_K: codes from the stored fp16 d/dmin and the 6-bit scale/min.
void k4_requantize(const float* x, uint16_t d16, uint16_t dmin16, const uint8_t* scales, int nmax,
                   uint8_t* L) {
  for (int j = 0; j < QK_K / 32; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, scales, &sc, &m);
    const float d = fp16_to_f32(d16) * sc;
    if (!d) continue;
    const float dm = fp16_to_f32(dmin16) * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = uint8_t(std::max(0, std::min(nmax, l)));
    }
  }
}

// Plain search of Q4_K/Q5_K: per sub-block weights av + |x|, then scales/mins to 6 bits by
// rounding against the largest (ggml-formats.md §3.3 "Q4_K ref").
void k45_ref_scales(const float* x, int nmax, float rmin, float rdelta, int nstep, uint8_t* L,
                    uint8_t* scales_out, uint16_t* d_out, uint16_t* dmin_out) {
  uint8_t Laux[32];
  float weights[QK_K], mins[QK_K / 32], scales[QK_K / 32];
  for (int j = 0; j < QK_K / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[32 * j + l] = av_x + std::fabs(x[32 * j + l]);
  }
  if (!affine_search_x8(32, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep, false))
    for (int j = 0; j < QK_K / 32; ++j)
      scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights + 32 * j, L + 32 * j, &mins[j],
                                   Laux, rmin, rdelta, nstep, false);
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < QK_K / 32; ++j) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < QK_K / 32; ++j) {
    uint8_t ls = uint8_t(nearest_int(inv_scale * scales[j]));
    uint8_t lm = uint8_t(nearest_int(inv_min * mins[j]));
    ls = std::min<uint8_t>(63, ls);
    lm = std::min<uint8_t>(63, lm);
    put_scale_min_k4(scales_out, j, ls, lm);
  }
  *d_out = f32_to_fp16(max_scale / 63.f);
  *dmin_out = f32_to_fp16(max_min / 63.f);
}

// Weighted search of Q4_K/Q5_K: weights qw*sqrt(sigma^2 + x^2), qkx3 per sub-block, then the
// "qp" quantization of the 8 scales and 8 mins weighted by each sub-block's total weight.
void k45_weighted_scales(const float* x, const float* qw, int nmax, uint8_t* L,
                         uint8_t* scales_out, uint16_t* d_out, uint16_t* dmin_out) {
  uint8_t Laux[32], Ls[QK_K / 32], Lm[QK_K / 32];
  float weights[QK_K], sw[QK_K / 32], mins[QK_K / 32], scales[QK_K / 32];
  float sum_x2 = 0;
  for (int l = 0; l < QK_K; ++l) sum_x2 += x[l] * x[l];
  const float sigma2 = 2 * sum_x2 / QK_K;
  for (int j = 0; j < QK_K / 32; ++j) {
    float* w = weights + 32 * j;
    for (int l = 0; l < 32; ++l) w[l] = qw[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
    float sumw = 0;
    for (int l = 0; l < 32; ++l) sumw += w[l];
    sw[j] = sumw;
  }
  if (!affine_search_x8(32, nmax, x, weights, L, scales, mins, -0.9f, 0.05f, 36, false))
    for (int j = 0; j < QK_K / 32; ++j)
      scales[j] = make_qkx3_quants(32, nmax, x + 32 * j, weights + 32 * j, L + 32 * j, &mins[j],
                                   Laux, -0.9f, 0.05f, 36, false);
  const float d_block = make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
  const float m_block = make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
  for (int j = 0; j < QK_K / 32; ++j)
    put_scale_min_k4(scales_out, j, std::min<uint8_t>(63, Ls[j]), std::min<uint8_t>(63, Lm[j]));
  *d_out = f32_to_fp16(d_block);
  *dmin_out = f32_to_fp16(m_block);
}

// Q4_K codes: chunk c of 64 -> qs[32c + l] = L[64c + l] | L[64c + l + 32] << 4.
void pack_q4_K(const uint8_t* L, uint8_t* q) {
  for (int j = 0; j < QK_K; j += 64, q += 32)
    for (int l = 0; l < 32; ++l) q[l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
}

// Q5_K: low nibbles as Q4_K, 5th bit of element 64c + l (+32) -> bit 2c (2c+1) of qh[l].
void pack_q5_K(const uint8_t* L, uint8_t* qh, uint8_t* ql) {
  std::memset(qh, 0, QK_K / 8);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < QK_K; n += 64, ql += 32) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j];
      if (l1 > 15) {
        l1 -= 16;
        qh[j] |= m1;
      }
      int l2 = L[n + j + 32];
      if (l2 > 15) {
        l2 -= 16;
        qh[j] |= m2;
      }
      ql[j] = uint8_t(l1 | (l2 << 4));
    }
    m1 <<= 2;
    m2 <<= 2;
  }
}

// Q4_K (nmax 15) and Q5_K (nmax 31): per super-block, the sub-block scales and mins by ggml's
// plain search (qw null; rmin, rdelta, nstep) or its weighted one, then the requantized codes.
template <typename B>
void quantize_row_k45(const float* x, B* y, int64_t nb, const float* qw, int nmax, float rmin, float rdelta,
                      int nstep) {
  uint8_t L[QK_K];
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    std::memset(y[i].scales, 0, sizeof y[i].scales);
    if (qw) k45_weighted_scales(x, qw + QK_K * i, nmax, L, y[i].scales, &y[i].d, &y[i].dmin);
    else k45_ref_scales(x, nmax, rmin, rdelta, nstep, L, y[i].scales, &y[i].d, &y[i].dmin);
    k4_requantize(x, y[i].d, y[i].dmin, y[i].scales, nmax, L);
    if constexpr (requires { y[i].qh; }) pack_q5_K(L, y[i].qh, y[i].qs);
    else pack_q4_K(L, y[i].qs);
  }
}

}  // namespace

void quantize_row_q4_K_ref(const float* x, block_q4_K* y, int64_t k) {
  quantize_row_k45(x, y, k / QK_K, nullptr, 15, -1.f, 0.1f, 20);
}

void quantize_row_q4_K_weighted(const float* x, block_q4_K* y, int64_t n_per_row, const float* qw) {
  if (!qw) fail("quantize_row_q4_K_weighted: importance weights required");
  quantize_row_k45(x, y, n_per_row / QK_K, qw, 15, 0.f, 0.f, 0);
}

void quantize_row_q5_K_ref(const float* x, block_q5_K* y, int64_t k) {
  quantize_row_k45(x, y, k / QK_K, nullptr, 31, -0.5f, 0.1f, 15);
}

void quantize_row_q5_K_weighted(const float* x, block_q5_K* y, int64_t n_per_row, const float* qw) {
  if (!qw) fail("quantize_row_q5_K_weighted: importance weights required");
  quantize_row_k45(x, y, n_per_row / QK_K, qw, 31, 0.f, 0.f, 0);
}

void dequantize_row_q4_K(const block_q4_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d), min = fp16_to_f32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int c = 0; c < QK_K / 64; ++c, q += 32) {
      float d1, m1, d2, m2;
      sub_block_pair(x[i].scales, c, d, min, &d1, &m1, &d2, &m2);
      for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
    }
  }
}

void dequantize_row_q5_K(const block_q5_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d), min = fp16_to_f32(x[i].dmin);
    const uint8_t* ql = x[i].qs;
    const uint8_t* qh = x[i].qh;
    uint8_t u1 = 1, u2 = 2;
    for (int c = 0; c < QK_K / 64; ++c, ql += 32) {
      float d1, m1, d2, m2;
      sub_block_pair(x[i].scales, c, d, min, &d1, &m1, &d2, &m2);
      for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      u1 = uint8_t(u1 << 2);
      u2 = uint8_t(u2 << 2);
    }
  }
}

namespace {

// Q6_K after the per-sub-block scales are known (both paths share this).
void q6_finish(const float* x, const float* scales, float max_scale, float max_abs_scale,
               int8_t* L, block_q6_K& b) {
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(&b, 0, sizeof b);
    b.d = f32_to_fp16(0.f);
    return;
  }
  const float iscale = -128.f / max_scale;
  b.d = f32_to_fp16(1 / iscale);
  for (int ib = 0; ib < QK_K / 16; ++ib) b.scales[ib] = int8_t(std::min(127, nearest_int(iscale * scales[ib])));
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = fp16_to_f32(b.d) * b.scales[j];
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = int8_t(std::max(-32, std::min(31, l)) + 32);
    }
  }
  uint8_t* ql = b.ql;
  uint8_t* qh = b.qh;
  for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
      const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
      ql[l] = uint8_t(q1 | (q3 << 4));
      ql[l + 32] = uint8_t(q2 | (q4 << 4));
      qh[l] = uint8_t((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                      ((L[j + l + 96] >> 4) << 6));
    }
  }
}

void q6_quantize(const float* x, block_q6_K* y, int64_t k, const float* qw) {
  int8_t L[QK_K];
  float scales[QK_K / 16];
  for (int64_t i = 0; i < k / QK_K; ++i, x += QK_K) {
    const float* wi = qw ? qw + QK_K * i : nullptr;
    for (int half = 0; half < 2; ++half) {
      const int o = 128 * half;
      if (!symmetric_search_x8(16, 32, x + o, wi ? wi + o : nullptr, L + o, scales + 8 * half))
        for (int ib = 8 * half; ib < 8 * half + 8; ++ib)
          scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, wi ? wi + 16 * ib : nullptr);
    }
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
      const float scale = scales[ib];
      const float abs_scale = std::fabs(scale);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = scale;
      }
    }
    q6_finish(x, scales, max_scale, max_abs_scale, L, y[i]);
  }
}

}  // namespace

void quantize_row_q6_K_ref(const float* x, block_q6_K* y, int64_t k) { q6_quantize(x, y, k, nullptr); }

// Q6_K's weighted path passes the raw importance values as weights (no sigma^2 term).
void quantize_row_q6_K_weighted(const float* x, block_q6_K* y, int64_t n_per_row, const float* qw) {
  q6_quantize(x, y, n_per_row, qw);
}

void dequantize_row_q6_K(const block_q6_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int e = 0; e < QK_K; ++e) {
      const int h = e / 128, g = (e % 128) / 32, l = e % 32;
      const uint8_t qlb = x[i].ql[64 * h + l + 32 * (g & 1)];
      const int low4 = g < 2 ? (qlb & 0xF) : (qlb >> 4);
      const int high2 = (x[i].qh[32 * h + l] >> (2 * g)) & 3;
      const int8_t q = int8_t((low4 | (high2 << 4)) - 32);
      y[e] = d * x[i].scales[e / 16] * q;
    }
    y += QK_K;
  }
}

}  // namespace samq
