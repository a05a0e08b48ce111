// One K-quant super-block (256 elements) quantized and dequantized: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
// (ggml-formats.md §2.4-2.8, §3.3), in one source for the CPU (q2_k_q3_k.cpp, q4_k_q5_k_q6_k.cpp
// loop these over a row) and the CUDA backend (core/hd.h). `qw` is the super-block's slice of the
// importance weights, or null for ggml's plain path. On the CPU the sub-block searches take the
// eight-lane AVX2 paths where available (same bytes as the scalar searches, tested); the GPU runs
// the scalar ones.
#pragma once
#include <cstdint>

#include "core/fp16.h"
#include "core/hd.h"
#include "quant/blocks.h"
#include "quant/search.h"

namespace samq::quant_detail {

// ---- shared packing --------------------------------------------------------------------------

// Four 2-bit codes per byte: qs[32h + l] holds elements 128h + l + {0, 32, 64, 96}.
SAMQ_HD inline void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// Unpacks the 6-bit scale and min of sub-block j of a Q4_K/Q5_K block (ggml-formats.md §2.6).
SAMQ_HD inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Packs the 6-bit scale ls and min lm of sub-block j (inverse of get_scale_min_k4).
SAMQ_HD inline void put_scale_min_k4(uint8_t* s, int j, uint8_t ls, uint8_t lm) {
  if (j < 4) {
    s[j] = ls;
    s[j + 4] = lm;
  } else {
    s[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
    s[j - 4] |= uint8_t((ls >> 4) << 6);
    s[j] |= uint8_t((lm >> 4) << 6);
  }
}

// Scales and mins (d*sc, dmin*m) of sub-blocks 2c and 2c+1 of a Q4_K/Q5_K block.
SAMQ_HD inline void sub_block_pair(const uint8_t* scales, int c, float d, float dmin, float* d1, float* m1,
                                   float* d2, float* m2) {
  uint8_t sc, m;
  get_scale_min_k4(2 * c, scales, &sc, &m);
  *d1 = d * sc;
  *m1 = dmin * m;
  get_scale_min_k4(2 * c + 1, scales, &sc, &m);
  *d2 = d * sc;
  *m2 = dmin * m;
}

// Element weights qw * sqrt(sigma2 + x^2) of n elements, with the sum of each group of g.
SAMQ_HD inline void sigma_weights(const float* x, const float* qw, float sigma2, int n, int g, float* w,
                                  float* sums) {
  for (int j = 0; j < n / g; ++j) {
    float* wj = w + g * j;
    for (int l = 0; l < g; ++l) wj[l] = qw[g * j + l] * hd::sqrt(sigma2 + x[g * j + l] * x[g * j + l]);
    float sumw = 0;
    for (int l = 0; l < g; ++l) sumw += wj[l];
    sums[j] = sumw;
  }
}

// The eight affine searches of n-element groups x[n k ..] (k < 8), SIMD on the CPU when it can.
SAMQ_HD inline void affine_search8(int n, int nmax, const float* x, const float* w, uint8_t* L, float* scales,
                                   float* mins, float rmin, float rdelta, int nstep, bool use_mad, bool qkx2) {
#if !defined(__CUDA_ARCH__)
  if (affine_search_x8(n, nmax, x, w, L, scales, mins, rmin, rdelta, nstep, use_mad)) return;
#endif
  uint8_t Laux[32];
  for (int j = 0; j < 8; ++j)
    scales[j] = qkx2 ? make_qkx2_quants(n, nmax, x + n * j, w + n * j, L + n * j, &mins[j], Laux, rmin, rdelta,
                                        nstep, use_mad)
                     : make_qkx3_quants(n, nmax, x + n * j, w + n * j, L + n * j, &mins[j], Laux, rmin, rdelta,
                                        nstep, use_mad);
}

// The eight symmetric searches (rmse_type 1) of n-element groups, SIMD on the CPU when it can.
SAMQ_HD inline void symmetric_search8(int n, int nmax, const float* x, const float* qw, int8_t* L, float* scales) {
#if !defined(__CUDA_ARCH__)
  if (symmetric_search_x8(n, nmax, x, qw, L, scales)) return;
#endif
  for (int j = 0; j < 8; ++j) scales[j] = make_qx_quants(n, nmax, x + n * j, L + n * j, 1, qw ? qw + n * j : nullptr);
}

// ---- Q2_K ------------------------------------------------------------------------------------

// Q2_K second pass: codes from the stored fp16 d/dmin and 4-bit scale/min of each sub-block.
SAMQ_HD inline void q2_requantize(const float* x, const block_q2_K& b, uint8_t* L) {
  const float dall = fp16_to_f32(b.d), mall = fp16_to_f32(b.dmin);
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = dall * (b.scales[j] & 0xF);
    if (!d) continue;
    const float dm = mall * (b.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int((x[16 * j + ii] + dm) / d);
      L[16 * j + ii] = uint8_t(hd::max(0, hd::min(3, l)));
    }
  }
}

// Plain path: weights |x|, make_qkx2_quants (mean absolute deviation); weighted path:
// qw*sqrt(sigma^2 + x^2), make_qkx3_quants, then make_qp_quants of the 16 scales and mins.
SAMQ_HD inline void quantize_block_q2_K(const float* x, const float* qw, block_q2_K& y) {
  uint8_t L[QK_K];
  float weights[QK_K], mins[QK_K / 16], scales[QK_K / 16];
  if (!qw) {
    const float q4scale = 15.f;
    for (int l = 0; l < QK_K; ++l) weights[l] = hd::fabs(x[l]);
    for (int half = 0; half < 2; ++half)
      affine_search8(16, 3, x + 128 * half, weights + 128 * half, L + 128 * half, scales + 8 * half,
                     mins + 8 * half, -0.5f, 0.1f, 15, true, true);
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      const float iscale = q4scale / max_scale;
      for (int j = 0; j < QK_K / 16; ++j) y.scales[j] = uint8_t(nearest_int(iscale * scales[j]));
      y.d = f32_to_fp16(max_scale / q4scale);
    } else {
      hd::zero_bytes(y.scales, sizeof y.scales);
      y.d = f32_to_fp16(0.f);
    }
    if (max_min > 0) {
      const float iscale = q4scale / max_min;
      for (int j = 0; j < QK_K / 16; ++j) y.scales[j] |= uint8_t(nearest_int(iscale * mins[j]) << 4);
      y.dmin = f32_to_fp16(max_min / q4scale);
    } else {
      y.dmin = f32_to_fp16(0.f);
    }
  } else {
    uint8_t Ls[QK_K / 16], Lm[QK_K / 16];
    float sw[QK_K / 16];
    float sumx2 = 0;
    for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
    sigma_weights(x, qw, sumx2 / QK_K, QK_K, 16, weights, sw);
    for (int half = 0; half < 2; ++half)
      affine_search8(16, 3, x + 128 * half, weights + 128 * half, L + 128 * half, scales + 8 * half,
                     mins + 8 * half, -0.9f, 0.05f, 36, false, false);
    const float dm = make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
    const float mm = make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
    y.d = f32_to_fp16(dm);
    y.dmin = f32_to_fp16(mm);
    for (int j = 0; j < QK_K / 16; ++j) y.scales[j] = uint8_t(Ls[j] | (Lm[j] << 4));
  }
  q2_requantize(x, y, L);
  pack_2bit(L, y.qs);
}

SAMQ_HD inline void dequantize_block(const block_q2_K& b, float* y) {
  const float d = fp16_to_f32(b.d), min = fp16_to_f32(b.dmin);
  for (int e = 0; e < QK_K; ++e) {
    const int h = e / 128, g = (e % 128) / 32, l = e % 32;
    const uint8_t sc = b.scales[e / 16];
    const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
    const int q = (b.qs[32 * h + l] >> (2 * g)) & 3;
    y[e] = dl * float(q) - ml;
  }
}

// ---- Q3_K ------------------------------------------------------------------------------------

// Q3_K: store the 6-bit offset scale l (0..63) of sub-block j.
SAMQ_HD inline void q3_put_scale(uint8_t* scales, int j, int l) {
  if (j < 8) scales[j] = uint8_t(l & 0xF);
  else scales[j - 8] |= uint8_t((l & 0xF) << 4);
  l >>= 4;
  scales[j % 4 + 8] |= uint8_t(l << (2 * (j / 4)));
}

SAMQ_HD inline int q3_get_scale(const uint8_t* scales, int j) {
  const int lo = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  return (lo | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

// Q3_K second pass and packing (codes 0..7 = q + 4; bit 2 goes to hmask).
SAMQ_HD inline void q3_requantize_pack(const float* x, block_q3_K& b, int8_t* L) {
  const float dall = fp16_to_f32(b.d);
  for (int j = 0; j < QK_K / 16; ++j) {
    const int8_t sc = int8_t(q3_get_scale(b.scales, j));
    const float d = dall * sc;
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = int8_t(hd::max(-4, hd::min(3, l)) + 4);
    }
  }
  hd::zero_bytes(b.hmask, sizeof b.hmask);
  int m = 0;
  uint8_t hm = 1;
  for (int j = 0; j < QK_K; ++j) {
    if (L[j] > 3) {
      b.hmask[m] |= hm;
      L[j] -= 4;
    }
    if (++m == QK_K / 8) {
      m = 0;
      hm <<= 1;
    }
  }
  pack_2bit(reinterpret_cast<const uint8_t*>(L), b.qs);
}

// Plain path: make_q3_quants per sub-block, scales against the dominant one; weighted path:
// make_qx_quants per sub-block with qw*sqrt(sigma^2 + x^2), then of the 16 scales.
SAMQ_HD inline void quantize_block_q3_K(const float* x, const float* qw, block_q3_K& y) {
  int8_t L[QK_K];
  float scales[QK_K / 16];
  hd::zero_bytes(y.scales, sizeof y.scales);
  if (!qw) {
    float max_scale = 0, amax = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
      scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
      const float scale = hd::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    if (max_scale) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < QK_K / 16; ++j) {
        int8_t l = int8_t(nearest_int(iscale * scales[j]));
        l = int8_t(hd::max(-32, hd::min(31, int(l))) + 32);
        q3_put_scale(y.scales, j, l);
      }
      y.d = f32_to_fp16(1 / iscale);
    } else {
      y.d = f32_to_fp16(0.f);
    }
  } else {
    int8_t Ls[QK_K / 16];
    float weight[QK_K], sw[QK_K / 16];
    float sumx2 = 0;
    for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
    sigma_weights(x, qw, 2 * sumx2 / QK_K, QK_K, 16, weight, sw);
    for (int half = 0; half < 2; ++half)
      symmetric_search8(16, 4, x + 128 * half, weight + 128 * half, L + 128 * half, scales + 8 * half);
    const float d_block = make_qx_quants(QK_K / 16, 32, scales, Ls, 1, sw);
    for (int j = 0; j < QK_K / 16; ++j) q3_put_scale(y.scales, j, Ls[j]);
    y.d = f32_to_fp16(d_block);
  }
  q3_requantize_pack(x, y, L);
}

SAMQ_HD inline void dequantize_block(const block_q3_K& b, float* y) {
  const float d_all = fp16_to_f32(b.d);
  for (int e = 0; e < QK_K; ++e) {
    const int h = e / 128, g = (e % 128) / 32, l = e % 32;
    const float dl = d_all * float(q3_get_scale(b.scales, e / 16));
    const int low = (b.qs[32 * h + l] >> (2 * g)) & 3;
    const int hbit = (b.hmask[l] >> (e / 32)) & 1;
    y[e] = dl * float(low - (hbit ? 0 : 4));
  }
}

// ---- Q4_K / Q5_K -----------------------------------------------------------------------------

// Second pass of Q4_K/Q5_K: codes from the stored fp16 d/dmin and the 6-bit scale/min.
SAMQ_HD inline void k4_requantize(const float* x, uint16_t d16, uint16_t dmin16, const uint8_t* scales, int nmax,
                                  uint8_t* L) {
  for (int j = 0; j < QK_K / 32; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, scales, &sc, &m);
    const float d = fp16_to_f32(d16) * sc;
    if (!d) continue;
    const float dm = fp16_to_f32(dmin16) * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = uint8_t(hd::max(0, hd::min(nmax, l)));
    }
  }
}

// Plain search of Q4_K/Q5_K: per sub-block weights av + |x|, then scales/mins to 6 bits by
// rounding against the largest (ggml-formats.md §3.3 "Q4_K ref").
SAMQ_HD inline void k45_ref_scales(const float* x, int nmax, float rmin, float rdelta, int nstep, uint8_t* L,
                                   uint8_t* scales_out, uint16_t* d_out, uint16_t* dmin_out) {
  float weights[QK_K], mins[QK_K / 32], scales[QK_K / 32];
  for (int j = 0; j < QK_K / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = hd::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[32 * j + l] = av_x + hd::fabs(x[32 * j + l]);
  }
  affine_search8(32, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep, false, true);
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
    ls = hd::min<uint8_t>(63, ls);
    lm = hd::min<uint8_t>(63, lm);
    put_scale_min_k4(scales_out, j, ls, lm);
  }
  *d_out = f32_to_fp16(max_scale / 63.f);
  *dmin_out = f32_to_fp16(max_min / 63.f);
}

// Weighted search of Q4_K/Q5_K: weights qw*sqrt(sigma^2 + x^2), qkx3 per sub-block, then the
// "qp" quantization of the 8 scales and 8 mins weighted by each sub-block's total weight.
SAMQ_HD inline void k45_weighted_scales(const float* x, const float* qw, int nmax, uint8_t* L, uint8_t* scales_out,
                                        uint16_t* d_out, uint16_t* dmin_out) {
  uint8_t Ls[QK_K / 32], Lm[QK_K / 32];
  float weights[QK_K], sw[QK_K / 32], mins[QK_K / 32], scales[QK_K / 32];
  float sum_x2 = 0;
  for (int l = 0; l < QK_K; ++l) sum_x2 += x[l] * x[l];
  sigma_weights(x, qw, 2 * sum_x2 / QK_K, QK_K, 32, weights, sw);
  affine_search8(32, nmax, x, weights, L, scales, mins, -0.9f, 0.05f, 36, false, false);
  const float d_block = make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
  const float m_block = make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
  for (int j = 0; j < QK_K / 32; ++j)
    put_scale_min_k4(scales_out, j, hd::min<uint8_t>(63, Ls[j]), hd::min<uint8_t>(63, Lm[j]));
  *d_out = f32_to_fp16(d_block);
  *dmin_out = f32_to_fp16(m_block);
}

// Q4_K codes: chunk c of 64 -> qs[32c + l] = L[64c + l] | L[64c + l + 32] << 4.
SAMQ_HD inline void pack_q4_K(const uint8_t* L, uint8_t* q) {
  for (int j = 0; j < QK_K; j += 64, q += 32)
    for (int l = 0; l < 32; ++l) q[l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
}

// Q5_K: low nibbles as Q4_K, 5th bit of element 64c + l (+32) -> bit 2c (2c+1) of qh[l].
SAMQ_HD inline void pack_q5_K(const uint8_t* L, uint8_t* qh, uint8_t* ql) {
  hd::zero_bytes(qh, QK_K / 8);
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

// Q4_K (B = block_q4_K, nmax 15, plain search -1, 0.1, 20) and Q5_K (nmax 31, -0.5, 0.1, 15).
template <typename B>
SAMQ_HD inline void quantize_block_k45(const float* x, const float* qw, B& y) {
  constexpr bool q5 = sizeof(B) == sizeof(block_q5_K);
  constexpr int nmax = q5 ? 31 : 15;
  uint8_t L[QK_K];
  hd::zero_bytes(y.scales, sizeof y.scales);
  if (qw) k45_weighted_scales(x, qw, nmax, L, y.scales, &y.d, &y.dmin);
  else if (q5) k45_ref_scales(x, nmax, -0.5f, 0.1f, 15, L, y.scales, &y.d, &y.dmin);
  else k45_ref_scales(x, nmax, -1.f, 0.1f, 20, L, y.scales, &y.d, &y.dmin);
  k4_requantize(x, y.d, y.dmin, y.scales, nmax, L);
  if constexpr (q5) pack_q5_K(L, y.qh, y.qs);
  else pack_q4_K(L, y.qs);
}

SAMQ_HD inline void dequantize_block(const block_q4_K& b, float* y) {
  const float d = fp16_to_f32(b.d), min = fp16_to_f32(b.dmin);
  const uint8_t* q = b.qs;
  for (int c = 0; c < QK_K / 64; ++c, q += 32) {
    float d1, m1, d2, m2;
    sub_block_pair(b.scales, c, d, min, &d1, &m1, &d2, &m2);
    for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
  }
}

SAMQ_HD inline void dequantize_block(const block_q5_K& b, float* y) {
  const float d = fp16_to_f32(b.d), min = fp16_to_f32(b.dmin);
  const uint8_t* ql = b.qs;
  const uint8_t* qh = b.qh;
  uint8_t u1 = 1, u2 = 2;
  for (int c = 0; c < QK_K / 64; ++c, ql += 32) {
    float d1, m1, d2, m2;
    sub_block_pair(b.scales, c, d, min, &d1, &m1, &d2, &m2);
    for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    u1 = uint8_t(u1 << 2);
    u2 = uint8_t(u2 << 2);
  }
}

// ---- Q6_K ------------------------------------------------------------------------------------

// Q6_K after the per-sub-block scales are known (both paths share this).
SAMQ_HD inline void q6_finish(const float* x, const float* scales, float max_scale, float max_abs_scale, int8_t* L,
                              block_q6_K& b) {
  if (max_abs_scale < kGroupMaxEps) {
    hd::zero_bytes(&b, sizeof b);
    b.d = f32_to_fp16(0.f);
    return;
  }
  const float iscale = -128.f / max_scale;
  b.d = f32_to_fp16(1 / iscale);
  for (int ib = 0; ib < QK_K / 16; ++ib) b.scales[ib] = int8_t(hd::min(127, nearest_int(iscale * scales[ib])));
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = fp16_to_f32(b.d) * b.scales[j];
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = int8_t(hd::max(-32, hd::min(31, l)) + 32);
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

// Both paths: make_qx_quants (rmse_type 1) per sub-block of 16; the weighted path passes the
// raw importance values as weights (no sigma^2 term).
SAMQ_HD inline void quantize_block_q6_K(const float* x, const float* qw, block_q6_K& y) {
  int8_t L[QK_K];
  float scales[QK_K / 16];
  for (int half = 0; half < 2; ++half) {
    const int o = 128 * half;
    symmetric_search8(16, 32, x + o, qw ? qw + o : nullptr, L + o, scales + 8 * half);
  }
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < QK_K / 16; ++ib) {
    const float scale = scales[ib];
    const float abs_scale = hd::fabs(scale);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scale;
    }
  }
  q6_finish(x, scales, max_scale, max_abs_scale, L, y);
}

SAMQ_HD inline void dequantize_block(const block_q6_K& b, float* y) {
  const float d = fp16_to_f32(b.d);
  for (int e = 0; e < QK_K; ++e) {
    const int h = e / 128, g = (e % 128) / 32, l = e % 32;
    const uint8_t qlb = b.ql[64 * h + l + 32 * (g & 1)];
    const int low4 = g < 2 ? (qlb & 0xF) : (qlb >> 4);
    const int high2 = (b.qh[32 * h + l] >> (2 * g)) & 3;
    const int8_t q = int8_t((low4 | (high2 << 4)) - 32);
    y[e] = d * b.scales[e / 16] * q;
  }
}

}  // namespace samq::quant_detail
