// One block of the 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL) and one IQ4_XS
// super-block, quantized and dequantized (ggml-formats.md §2.2, §2.10, §3.3), in one source for
// the CPU (legacy.cpp, iq4.cpp loop these over a row, eight blocks per SIMD search where they
// can) and the CUDA backend (core/hd.h).
#pragma once
#include <cfloat>
#include <cstdint>

#include "core/fp16.h"
#include "core/hd.h"
#include "quant/blocks.h"
#include "quant/search.h"

namespace samq::quant_detail {

// ---- Q4_0, Q4_1, Q5_0, Q5_1 ------------------------------------------------------------------

// Largest-magnitude element of a block, keeping its sign (first one on ties).
SAMQ_HD inline float block_signed_max(const float* x, int n) {
  float amax = 0, max = 0;
  for (int j = 0; j < n; ++j) {
    if (amax < hd::fabs(x[j])) {
      amax = hd::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

SAMQ_HD inline void block_min_max(const float* x, int n, float* mn, float* mx) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  *mn = min;
  *mx = max;
}

// Codes of the plain (unweighted) paths, ggml's quantize_row_q*_ref: symmetric d = signed max
// / -nmax, codes trunc(x/d + nmax + 0.5) up to 2*nmax-1; affine d = (max - min) / nmax, codes
// trunc((x - min)/d + 0.5) up to nmax. An all-zero block gets 1/d = 0.
SAMQ_HD inline float symmetric_codes(const float* x, int nmax, uint8_t* L) {
  const float d = block_signed_max(x, 32) / -nmax;
  const float id = d ? 1.0f / d : 0.0f;
  for (int j = 0; j < 32; ++j) L[j] = uint8_t(hd::min(2 * nmax - 1, int(int8_t(x[j] * id + (nmax + 0.5f)))));
  return d;
}

SAMQ_HD inline float affine_codes(const float* x, int nmax, uint8_t* L, float* min) {
  float max;
  block_min_max(x, 32, min, &max);
  const float d = (max - *min) / nmax;
  const float id = d ? 1.0f / d : 0.0f;
  for (int j = 0; j < 32; ++j) L[j] = uint8_t(hd::min(nmax, int(int8_t((x[j] - *min) * id + 0.5f))));
  return d;
}

// sigma^2 of the weighted legacy paths: mean square over the whole row.
SAMQ_HD inline float row_sigma2(const float* x, int64_t n) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / n;
}

SAMQ_HD inline void legacy_weights(const float* xb, const float* qw, float sigma2, float* w) {
  for (int j = 0; j < 32; ++j) w[j] = qw[j] * hd::sqrt(sigma2 + xb[j] * xb[j]);
}

// 32 4-bit codes: element j in the low nibble of qs[j], element j+16 in the high one.
SAMQ_HD inline void pack4(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = uint8_t(L[j] | (L[j + 16] << 4));
}

// 5th bits of 32 codes packed into one LE uint32 (bit j <-> element j).
SAMQ_HD inline void pack5(const uint8_t* L, uint8_t* qs, uint8_t* qh_out) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const uint8_t a = L[j], b = L[j + 16];
    qs[j] = uint8_t((a & 0x0F) | ((b & 0x0F) << 4));
    qh |= ((a & 0x10u) >> 4) << j;
    qh |= ((b & 0x10u) >> 4) << (j + 16);
  }
  for (int k = 0; k < 4; ++k) qh_out[k] = uint8_t(qh >> (8 * k));
}

// The codes of a Q4_0/Q4_1 block (inverse of pack4).
SAMQ_HD inline void unpack4(const uint8_t* qs, int* q) {
  for (int j = 0; j < 16; ++j) {
    q[j] = qs[j] & 0x0F;
    q[j + 16] = qs[j] >> 4;
  }
}

// The 5-bit codes of a Q5_0/Q5_1 block (inverse of pack5).
SAMQ_HD inline void unpack5(const uint8_t* qs, const uint8_t* qh_in, int* q) {
  const uint32_t qh = uint32_t(qh_in[0]) | uint32_t(qh_in[1]) << 8 | uint32_t(qh_in[2]) << 16 |
                      uint32_t(qh_in[3]) << 24;
  for (int j = 0; j < 16; ++j) {
    q[j] = (qs[j] & 0x0F) | (int((qh >> j) & 1) << 4);
    q[j + 16] = (qs[j] >> 4) | (int((qh >> (j + 16)) & 1) << 4);
  }
}

// The codes of one block into its nibbles (and Q5's fifth-bit plane).
template <typename B>
SAMQ_HD inline void store_codes(const uint8_t* L, B& b) {
  if constexpr (requires { b.qh; }) pack5(L, b.qs, b.qh);
  else pack4(L, b.qs);
}

// nmax of each type: Q4_0 8, Q4_1 15, Q5_0 16, Q5_1 31.
template <typename B>
SAMQ_HD constexpr int legacy_nmax() {
  constexpr bool affine = requires(B b) { b.m; };
  constexpr bool five = requires(B b) { b.qh; };
  return five ? (affine ? 31 : 16) : (affine ? 15 : 8);
}

// The plain path: symmetric (Q4_0, Q5_0) or affine (Q4_1, Q5_1, which have m).
template <typename B>
SAMQ_HD inline void quantize_block_legacy_plain(const float* x, B& y) {
  uint8_t L[32];
  if constexpr (requires { y.m; }) {
    float min;
    y.d = f32_to_fp16(affine_codes(x, legacy_nmax<B>(), L, &min));
    y.m = f32_to_fp16(min);
  } else {
    y.d = f32_to_fp16(symmetric_codes(x, legacy_nmax<B>(), L));
  }
  store_codes(L, y);
}

// A block's scale (and positive min) and codes from its weights w: the symmetric (a) search or
// the affine (c) one (ggml's weighted path per block; the CPU runs eight blocks per SIMD search).
template <typename B>
SAMQ_HD inline void store_legacy_weighted(const uint8_t* L, float d, float min, B& b) {
  b.d = f32_to_fp16(d);
  if constexpr (requires { b.m; }) b.m = f32_to_fp16(-min);
  store_codes(L, b);
}

// The importance-weighted path of one block; sigma2 = row_sigma2 of the block's whole row.
template <typename B>
SAMQ_HD inline void quantize_block_legacy_weighted(const float* x, const float* qw, float sigma2, B& y) {
  float w[32], min = 0, d;
  uint8_t L[32];
  legacy_weights(x, qw, sigma2, w);
  if constexpr (requires { y.m; }) {
    uint8_t Laux[32];
    d = make_qkx3_quants(32, legacy_nmax<B>(), x, w, L, &min, Laux, -0.9f, 0.05f, 36, false);
  } else {
    d = make_qx_quants(32, legacy_nmax<B>(), x, reinterpret_cast<int8_t*>(L), 1, w);
  }
  store_legacy_weighted(L, d, min, y);
}

SAMQ_HD inline void quantize_block_q8_0(const float* x, block_q8_0& y) {
  float amax = 0;
  for (int j = 0; j < QK8_0; ++j) amax = hd::max(amax, hd::fabs(x[j]));
  const float d = amax / 127;
  const float id = d ? 1.0f / d : 0.0f;
  y.d = f32_to_fp16(d);
  for (int j = 0; j < QK8_0; ++j) y.qs[j] = int8_t(hd::round(x[j] * id));
}

// Dequantizers: y = (q - 8)*d, q*d + m, (q - 16)*d, q*d + m, q*d (int times float, then + m).
SAMQ_HD inline void dequantize_block(const block_q4_0& b, float* y) {
  int q[32];
  const float d = fp16_to_f32(b.d);
  unpack4(b.qs, q);
  for (int j = 0; j < 32; ++j) y[j] = (q[j] - 8) * d;
}
SAMQ_HD inline void dequantize_block(const block_q4_1& b, float* y) {
  int q[32];
  const float d = fp16_to_f32(b.d), m = fp16_to_f32(b.m);
  unpack4(b.qs, q);
  for (int j = 0; j < 32; ++j) y[j] = q[j] * d + m;
}
SAMQ_HD inline void dequantize_block(const block_q5_0& b, float* y) {
  int q[32];
  const float d = fp16_to_f32(b.d);
  unpack5(b.qs, b.qh, q);
  for (int j = 0; j < 32; ++j) y[j] = (q[j] - 16) * d;
}
SAMQ_HD inline void dequantize_block(const block_q5_1& b, float* y) {
  int q[32];
  const float d = fp16_to_f32(b.d), m = fp16_to_f32(b.m);
  unpack5(b.qs, b.qh, q);
  for (int j = 0; j < 32; ++j) y[j] = q[j] * d + m;
}
SAMQ_HD inline void dequantize_block(const block_q8_0& b, float* y) {
  const float d = fp16_to_f32(b.d);
  for (int j = 0; j < QK8_0; ++j) y[j] = b.qs[j] * d;
}

// ---- IQ4_NL, IQ4_XS --------------------------------------------------------------------------

// Element weights of a super-block of `sbs` elements: qw*sqrt(sigma^2 + x^2) with
// sigma^2 = 2*sumsq/sbs, or x^2 without importance.
SAMQ_HD inline void iq4_weights(const float* x, int sbs, const float* qw, float* weight) {
  float sigma2 = 0;
  for (int j = 0; j < sbs; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / sbs;
  for (int j = 0; j < sbs; ++j) weight[j] = qw ? qw[j] * hd::sqrt(sigma2 + x[j] * x[j]) : x[j] * x[j];
}

SAMQ_HD inline void pack_iq4(const uint8_t* L, int n, uint8_t* q4) {
  for (int i = 0; i < n / 32; ++i)
    for (int j = 0; j < 16; ++j) q4[16 * i + j] = uint8_t(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

// IQ4_NL block: store the block scale, re-map codes with x * (1/d).
SAMQ_HD inline void iq4_finish_nl(const float* x, float d, block_iq4_nl& b) {
  const Iq4Table kv = iq4nl_table();
  uint8_t L[32];
  b.d = f32_to_fp16(d);
  const float id = d ? 1 / d : 0;
  for (int j = 0; j < 32; ++j) L[j] = uint8_t(best_index_int8(16, kv.v, id * x[j]));
  pack_iq4(L, 32, b.qs);
}

// IQ4_XS super-block: 6-bit block scales against the dominant one (D = -smax/32), codes
// re-mapped with each block's quantized scale.
SAMQ_HD inline void iq4_finish_xs(const float* x, const float* scales, block_iq4_xs& b) {
  const Iq4Table kv = iq4nl_table();
  float max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < QK_K / 32; ++ib) {
    const float abs_d = hd::fabs(scales[ib]);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = scales[ib];
    }
  }
  uint8_t L[QK_K];
  b.scales_h = 0;
  const float d = -max_scale / 32;
  b.d = f32_to_fp16(d);
  const float id = d ? 1 / d : 0.f;
  for (int ib = 0; ib < QK_K / 32; ++ib) {
    int l = hd::max(-32, hd::min(31, nearest_int(id * scales[ib])));
    const float dl = d * l;
    const float idl = dl ? 1 / dl : 0.f;
    for (int j = 0; j < 32; ++j) L[32 * ib + j] = uint8_t(best_index_int8(16, kv.v, idl * x[32 * ib + j]));
    l += 32;
    const uint8_t l_l = uint8_t(l & 0xf), l_h = uint8_t(l >> 4);
    if (ib % 2 == 0) b.scales_l[ib / 2] = l_l;
    else b.scales_l[ib / 2] |= uint8_t(l_l << 4);
    b.scales_h |= uint16_t(l_h << 2 * (ib % 8));
  }
  pack_iq4(L, QK_K, b.qs);
}

// One IQ4_NL block (its own 32 elements give sigma^2); qw may be null.
SAMQ_HD inline void quantize_block_iq4_nl(const float* x, const float* qw, block_iq4_nl& y) {
  float weight[32];
  iq4_weights(x, QK4_NL, qw, weight);
  iq4_finish_nl(x, iq4_block_scale(x, weight), y);
}

// One IQ4_XS super-block; qw may be null.
SAMQ_HD inline void quantize_block_iq4_xs(const float* x, const float* qw, block_iq4_xs& y) {
  float weight[QK_K], scales[QK_K / 32];
  iq4_weights(x, QK_K, qw, weight);
#if !defined(__CUDA_ARCH__)
  if (!iq4_scale_search_x8(x, weight, scales))
#endif
    for (int ib = 0; ib < QK_K / 32; ++ib) scales[ib] = iq4_block_scale(x + 32 * ib, weight + 32 * ib);
  iq4_finish_xs(x, scales, y);
}

SAMQ_HD inline void dequantize_block(const block_iq4_nl& b, float* y) {
  const Iq4Table kv = iq4nl_table();
  const float d = fp16_to_f32(b.d);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * kv.v[b.qs[j] & 0xf];
    y[j + 16] = d * kv.v[b.qs[j] >> 4];
  }
}

SAMQ_HD inline void dequantize_block(const block_iq4_xs& b, float* y) {
  const Iq4Table kv = iq4nl_table();
  const float d = fp16_to_f32(b.d);
  const uint8_t* qs = b.qs;
  for (int ib = 0; ib < QK_K / 32; ++ib, y += 32, qs += 16) {
    const int ls = ((b.scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b.scales_h >> 2 * ib) & 3) << 4);
    const float dl = d * float(ls - 32);
    for (int j = 0; j < 16; ++j) {
      y[j] = dl * kv.v[qs[j] & 0xf];
      y[j + 16] = dl * kv.v[qs[j] >> 4];
    }
  }
}

}  // namespace samq::quant_detail
