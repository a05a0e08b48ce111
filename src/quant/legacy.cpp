// The 32-element "legacy" formats Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 (ggml-formats.md §2.2, §3.3).
// Plain paths: one scale from the block's extreme, codes by truncating x*id + offset (Q8_0:
// roundf). Weighted paths: per-row sigma^2, element weight qw*sqrt(sigma^2 + x^2), and the
// symmetric (a) or affine (c) search. Element order: low nibble of qs[j] = element j, high
// nibble = element j+16.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "quant/quants_ref.h"
#include "quant/search.h"

namespace samq {
using namespace quant_detail;

namespace {

// Largest-magnitude element of a block, keeping its sign (first one on ties).
float block_signed_max(const float* x, int n) {
  float amax = 0, max = 0;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

void block_min_max(const float* x, int n, float* mn, float* mx) {
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
float symmetric_codes(const float* x, int nmax, uint8_t* L) {
  const float d = block_signed_max(x, 32) / -nmax;
  const float id = d ? 1.0f / d : 0.0f;
  for (int j = 0; j < 32; ++j) L[j] = uint8_t(std::min(2 * nmax - 1, int(int8_t(x[j] * id + (nmax + 0.5f)))));
  return d;
}

float affine_codes(const float* x, int nmax, uint8_t* L, float* min) {
  float max;
  block_min_max(x, 32, min, &max);
  const float d = (max - *min) / nmax;
  const float id = d ? 1.0f / d : 0.0f;
  for (int j = 0; j < 32; ++j) L[j] = uint8_t(std::min(nmax, int(int8_t((x[j] - *min) * id + 0.5f))));
  return d;
}

// sigma^2 of the weighted legacy paths: mean square over the whole row.
float row_sigma2(const float* x, int64_t n) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / n;
}

void legacy_weights(const float* xb, const float* qw, float sigma2, float* w) {
  for (int j = 0; j < 32; ++j) w[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
}

// 32 4-bit codes: element j in the low nibble of qs[j], element j+16 in the high one.
void pack4(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = uint8_t(L[j] | (L[j + 16] << 4));
}

// 5th bits of 32 codes packed into one LE uint32 (bit j <-> element j).
void pack5(const uint8_t* L, uint8_t* qs, uint8_t* qh_out) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const uint8_t a = L[j], b = L[j + 16];
    qs[j] = uint8_t((a & 0x0F) | ((b & 0x0F) << 4));
    qh |= ((a & 0x10u) >> 4) << j;
    qh |= ((b & 0x10u) >> 4) << (j + 16);
  }
  std::memcpy(qh_out, &qh, 4);
}

// The codes of a Q4_0/Q4_1 block (inverse of pack4).
void unpack4(const uint8_t* qs, int* q) {
  for (int j = 0; j < 16; ++j) {
    q[j] = qs[j] & 0x0F;
    q[j + 16] = qs[j] >> 4;
  }
}

// The 5-bit codes of a Q5_0/Q5_1 block (inverse of pack5).
void unpack5(const uint8_t* qs, const uint8_t* qh_in, int* q) {
  uint32_t qh;
  std::memcpy(&qh, qh_in, 4);
  for (int j = 0; j < 16; ++j) {
    q[j] = (qs[j] & 0x0F) | (int((qh >> j) & 1) << 4);
    q[j + 16] = (qs[j] >> 4) | (int((qh >> (j + 16)) & 1) << 4);
  }
}

// The codes of one block into its nibbles (and Q5's fifth-bit plane).
template <typename B>
void store_codes(const uint8_t* L, B& b) {
  if constexpr (requires { b.qh; }) pack5(L, b.qs, b.qh);
  else pack4(L, b.qs);
}

// The plain path of the four types: symmetric (Q4_0, Q5_0) or affine (Q4_1, Q5_1, which have m).
template <typename B>
void quantize_row_plain(const float* x, B* y, int64_t k, int nmax) {
  uint8_t L[32];
  for (int64_t i = 0; i < k / 32; ++i, x += 32) {
    if constexpr (requires { y[i].m; }) {
      float min;
      y[i].d = f32_to_fp16(affine_codes(x, nmax, L, &min));
      y[i].m = f32_to_fp16(min);
    } else {
      y[i].d = f32_to_fp16(symmetric_codes(x, nmax, L));
    }
    store_codes(L, y[i]);
  }
}

}  // namespace

void quantize_row_q4_0_ref(const float* x, block_q4_0* y, int64_t k) { quantize_row_plain(x, y, k, 8); }
void quantize_row_q4_1_ref(const float* x, block_q4_1* y, int64_t k) { quantize_row_plain(x, y, k, 15); }
void quantize_row_q5_0_ref(const float* x, block_q5_0* y, int64_t k) { quantize_row_plain(x, y, k, 16); }
// (ggml's Q5_1 path converts without the clamp; (x - min)/d + 0.5 < 32 here, so same codes.)
void quantize_row_q5_1_ref(const float* x, block_q5_1* y, int64_t k) { quantize_row_plain(x, y, k, 31); }

void quantize_row_q8_0_ref(const float* x, block_q8_0* y, int64_t k) {
  for (int64_t i = 0; i < k / QK8_0; ++i, x += QK8_0) {
    float amax = 0;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    for (int j = 0; j < QK8_0; ++j) y[i].qs[j] = int8_t(std::round(x[j] * id));
  }
}

namespace {

// Codes and scales of g (<= 8) consecutive blocks xg with weights w, by the symmetric (a) search
// (Q4_0, Q5_0) or the affine (c) search (Q4_1, Q5_1: positive min): eight blocks at a time
// through the SIMD search, the scalar search otherwise (same bytes).
void symmetric_group(int g, int nmax, const float* xg, const float* w, uint8_t* L, float* d) {
  int8_t* Ls = reinterpret_cast<int8_t*>(L);  // codes are 0 .. 2*nmax-1
  if (g < 8 || !symmetric_search_x8(32, nmax, xg, w, Ls, d))
    for (int k = 0; k < g; ++k) d[k] = make_qx_quants(32, nmax, xg + 32 * k, Ls + 32 * k, 1, w + 32 * k);
}

void affine_group(int g, int nmax, const float* xg, const float* w, uint8_t* L, float* d, float* min) {
  uint8_t Laux[32];
  if (g < 8 || !affine_search_x8(32, nmax, xg, w, L, d, min, -0.9f, 0.05f, 36, false))
    for (int k = 0; k < g; ++k)
      d[k] = make_qkx3_quants(32, nmax, xg + 32 * k, w + 32 * k, L + 32 * k, &min[k], Laux, -0.9f, 0.05f, 36, false);
}

// The importance-weighted path of the four types, eight blocks at a time.
template <typename B>
void quantize_row_weighted(const float* x, B* y, int64_t n_per_row, const float* qw, int nmax) {
  constexpr bool affine = requires { y->m; };
  const float sigma2 = row_sigma2(x, n_per_row);
  float w[8 * 32], d[8], min[8];
  uint8_t L[8 * 32];
  const int64_t nb = n_per_row / 32;
  for (int64_t ib0 = 0; ib0 < nb; ib0 += 8) {
    const int g = int(std::min<int64_t>(8, nb - ib0));  // blocks in this group
    const float* xg = x + 32 * ib0;
    for (int k = 0; k < g; ++k) legacy_weights(xg + 32 * k, qw + 32 * (ib0 + k), sigma2, w + 32 * k);
    if constexpr (affine) affine_group(g, nmax, xg, w, L, d, min);
    else symmetric_group(g, nmax, xg, w, L, d);
    for (int k = 0; k < g; ++k) {
      B& b = y[ib0 + k];
      b.d = f32_to_fp16(d[k]);
      if constexpr (affine) b.m = f32_to_fp16(-min[k]);
      store_codes(L + 32 * k, b);
    }
  }
}

}  // namespace

void quantize_row_q4_0_weighted(const float* x, block_q4_0* y, int64_t n_per_row, const float* qw) {
  quantize_row_weighted(x, y, n_per_row, qw, 8);
}
void quantize_row_q4_1_weighted(const float* x, block_q4_1* y, int64_t n_per_row, const float* qw) {
  quantize_row_weighted(x, y, n_per_row, qw, 15);
}
void quantize_row_q5_0_weighted(const float* x, block_q5_0* y, int64_t n_per_row, const float* qw) {
  quantize_row_weighted(x, y, n_per_row, qw, 16);
}
void quantize_row_q5_1_weighted(const float* x, block_q5_1* y, int64_t n_per_row, const float* qw) {
  quantize_row_weighted(x, y, n_per_row, qw, 31);
}

// Dequantizers: y = (q - 8)*d, q*d + m, (q - 16)*d, q*d + m, q*d (int times float, then + m).
void dequantize_row_q4_0(const block_q4_0* x, float* y, int64_t k) {
  int q[32];
  for (int64_t i = 0; i < k / QK4_0; ++i, y += QK4_0) {
    const float d = fp16_to_f32(x[i].d);
    unpack4(x[i].qs, q);
    for (int j = 0; j < 32; ++j) y[j] = (q[j] - 8) * d;
  }
}

void dequantize_row_q4_1(const block_q4_1* x, float* y, int64_t k) {
  int q[32];
  for (int64_t i = 0; i < k / QK4_1; ++i, y += QK4_1) {
    const float d = fp16_to_f32(x[i].d), m = fp16_to_f32(x[i].m);
    unpack4(x[i].qs, q);
    for (int j = 0; j < 32; ++j) y[j] = q[j] * d + m;
  }
}

void dequantize_row_q5_0(const block_q5_0* x, float* y, int64_t k) {
  int q[32];
  for (int64_t i = 0; i < k / QK5_0; ++i, y += QK5_0) {
    const float d = fp16_to_f32(x[i].d);
    unpack5(x[i].qs, x[i].qh, q);
    for (int j = 0; j < 32; ++j) y[j] = (q[j] - 16) * d;
  }
}

void dequantize_row_q5_1(const block_q5_1* x, float* y, int64_t k) {
  int q[32];
  for (int64_t i = 0; i < k / QK5_1; ++i, y += QK5_1) {
    const float d = fp16_to_f32(x[i].d), m = fp16_to_f32(x[i].m);
    unpack5(x[i].qs, x[i].qh, q);
    for (int j = 0; j < 32; ++j) y[j] = q[j] * d + m;
  }
}

void dequantize_row_q8_0(const block_q8_0* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK8_0; ++i, y += QK8_0) {
    const float d = fp16_to_f32(x[i].d);
    for (int j = 0; j < QK8_0; ++j) y[j] = x[i].qs[j] * d;
  }
}

}  // namespace samq
