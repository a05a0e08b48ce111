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

// sigma^2 of the weighted legacy paths: mean square over the whole row.
float row_sigma2(const float* x, int64_t n) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / n;
}

void legacy_weights(const float* xb, const float* qw, float sigma2, float* w) {
  for (int j = 0; j < 32; ++j) w[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
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

}  // namespace

void quantize_row_q4_0_ref(const float* x, block_q4_0* y, int64_t k) {
  for (int64_t i = 0; i < k / QK4_0; ++i, x += QK4_0) {
    const float max = block_signed_max(x, QK4_0);
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    for (int j = 0; j < 16; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[16 + j] * id;
      const uint8_t q0 = uint8_t(std::min(15, int(int8_t(x0 + 8.5f))));
      const uint8_t q1 = uint8_t(std::min(15, int(int8_t(x1 + 8.5f))));
      y[i].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

void quantize_row_q4_1_ref(const float* x, block_q4_1* y, int64_t k) {
  for (int64_t i = 0; i < k / QK4_1; ++i, x += QK4_1) {
    float min, max;
    block_min_max(x, QK4_1, &min, &max);
    const float d = (max - min) / 15;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    y[i].m = f32_to_fp16(min);
    for (int j = 0; j < 16; ++j) {
      const float x0 = (x[j] - min) * id;
      const float x1 = (x[16 + j] - min) * id;
      const uint8_t q0 = uint8_t(std::min(15, int(int8_t(x0 + 0.5f))));
      const uint8_t q1 = uint8_t(std::min(15, int(int8_t(x1 + 0.5f))));
      y[i].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

void quantize_row_q5_0_ref(const float* x, block_q5_0* y, int64_t k) {
  uint8_t L[32];
  for (int64_t i = 0; i < k / QK5_0; ++i, x += QK5_0) {
    const float max = block_signed_max(x, QK5_0);
    const float d = max / -16;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    for (int j = 0; j < 32; ++j) L[j] = uint8_t(std::min(31, int(int8_t(x[j] * id + 16.5f))));
    pack5(L, y[i].qs, y[i].qh);
  }
}

void quantize_row_q5_1_ref(const float* x, block_q5_1* y, int64_t k) {
  uint8_t L[32];
  for (int64_t i = 0; i < k / QK5_1; ++i, x += QK5_1) {
    float min, max;
    block_min_max(x, QK5_1, &min, &max);
    const float d = (max - min) / 31;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    y[i].m = f32_to_fp16(min);
    for (int j = 0; j < 32; ++j) L[j] = uint8_t((x[j] - min) * id + 0.5f);
    pack5(L, y[i].qs, y[i].qh);
  }
}

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

void quantize_row_q4_0_weighted(const float* x, block_q4_0* y, int64_t n_per_row, const float* qw) {
  const float sigma2 = row_sigma2(x, n_per_row);
  float w[8 * 32], d[8];
  int8_t L[8 * 32];
  const int64_t nb = n_per_row / QK4_0;
  for (int64_t ib0 = 0; ib0 < nb; ib0 += 8) {
    const int g = int(std::min<int64_t>(8, nb - ib0));  // blocks in this group
    const float* xg = x + QK4_0 * ib0;
    for (int k = 0; k < g; ++k) legacy_weights(xg + 32 * k, qw + QK4_0 * (ib0 + k), sigma2, w + 32 * k);
    if (g < 8 || !symmetric_search_x8(32, 8, xg, w, L, d))
      for (int k = 0; k < g; ++k) d[k] = make_qx_quants(32, 8, xg + 32 * k, L + 32 * k, 1, w + 32 * k);
    for (int k = 0; k < g; ++k) {
      block_q4_0& b = y[ib0 + k];
      b.d = f32_to_fp16(d[k]);
      for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(L[32 * k + j] | (L[32 * k + j + 16] << 4));
    }
  }
}

void quantize_row_q5_0_weighted(const float* x, block_q5_0* y, int64_t n_per_row, const float* qw) {
  const float sigma2 = row_sigma2(x, n_per_row);
  float w[8 * 32], d[8];
  int8_t L[8 * 32];
  const int64_t nb = n_per_row / QK5_0;
  for (int64_t ib0 = 0; ib0 < nb; ib0 += 8) {
    const int g = int(std::min<int64_t>(8, nb - ib0));  // blocks in this group
    const float* xg = x + QK5_0 * ib0;
    for (int k = 0; k < g; ++k) legacy_weights(xg + 32 * k, qw + QK5_0 * (ib0 + k), sigma2, w + 32 * k);
    if (g < 8 || !symmetric_search_x8(32, 16, xg, w, L, d))
      for (int k = 0; k < g; ++k) d[k] = make_qx_quants(32, 16, xg + 32 * k, L + 32 * k, 1, w + 32 * k);
    for (int k = 0; k < g; ++k) {
      block_q5_0& b = y[ib0 + k];
      b.d = f32_to_fp16(d[k]);
      pack5(reinterpret_cast<const uint8_t*>(L + 32 * k), b.qs, b.qh);
    }
  }
}

// The importance-weighted affine search shared by q4_1 (nmax 15) and q5_1 (nmax 31): eight
// blocks at a time through the SIMD search, the scalar make_qkx3_quants otherwise (same bytes);
// store(block index, levels, d, min) packs one block.
template <typename Store>
static void quantize_row_affine_weighted(const float* x, int64_t n_per_row, const float* qw, int nmax, Store store) {
  const float sigma2 = row_sigma2(x, n_per_row);
  float w[8 * 32], d[8], min[8];
  uint8_t L[8 * 32], Laux[32];
  const int64_t nb = n_per_row / 32;
  for (int64_t ib0 = 0; ib0 < nb; ib0 += 8) {
    const int g = int(std::min<int64_t>(8, nb - ib0));  // blocks in this group
    const float* xg = x + 32 * ib0;
    for (int k = 0; k < g; ++k) legacy_weights(xg + 32 * k, qw + 32 * (ib0 + k), sigma2, w + 32 * k);
    if (g < 8 || !affine_search_x8(32, nmax, xg, w, L, d, min, -0.9f, 0.05f, 36, false))
      for (int k = 0; k < g; ++k)
        d[k] = make_qkx3_quants(32, nmax, xg + 32 * k, w + 32 * k, L + 32 * k, &min[k], Laux, -0.9f, 0.05f, 36, false);
    for (int k = 0; k < g; ++k) store(ib0 + k, L + 32 * k, d[k], min[k]);
  }
}

void quantize_row_q4_1_weighted(const float* x, block_q4_1* y, int64_t n_per_row, const float* qw) {
  quantize_row_affine_weighted(x, n_per_row, qw, 15, [y](int64_t i, const uint8_t* L, float d, float min) {
    block_q4_1& b = y[i];
    b.d = f32_to_fp16(d);
    b.m = f32_to_fp16(-min);
    for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(L[j] | (L[j + 16] << 4));
  });
}

void quantize_row_q5_1_weighted(const float* x, block_q5_1* y, int64_t n_per_row, const float* qw) {
  quantize_row_affine_weighted(x, n_per_row, qw, 31, [y](int64_t i, const uint8_t* L, float d, float min) {
    block_q5_1& b = y[i];
    b.d = f32_to_fp16(d);
    b.m = f32_to_fp16(-min);
    pack5(L, b.qs, b.qh);
  });
}

// Dequantizers: y = (q - 8)*d, q*d + m, (q - 16)*d, q*d + m, q*d (int times float, then + m).
void dequantize_row_q4_0(const block_q4_0* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK4_0; ++i, y += QK4_0) {
    const float d = fp16_to_f32(x[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = ((x[i].qs[j] & 0x0F) - 8) * d;
      y[j + 16] = ((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_row_q4_1(const block_q4_1* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK4_1; ++i, y += QK4_1) {
    const float d = fp16_to_f32(x[i].d);
    const float m = fp16_to_f32(x[i].m);
    for (int j = 0; j < 16; ++j) {
      y[j] = (x[i].qs[j] & 0x0F) * d + m;
      y[j + 16] = (x[i].qs[j] >> 4) * d + m;
    }
  }
}

void dequantize_row_q5_0(const block_q5_0* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK5_0; ++i, y += QK5_0) {
    const float d = fp16_to_f32(x[i].d);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < 16; ++j) {
      const int h0 = int((qh >> j) & 1) << 4;
      const int h1 = int((qh >> (j + 16)) & 1) << 4;
      y[j] = (((x[i].qs[j] & 0x0F) | h0) - 16) * d;
      y[j + 16] = (((x[i].qs[j] >> 4) | h1) - 16) * d;
    }
  }
}

void dequantize_row_q5_1(const block_q5_1* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK5_1; ++i, y += QK5_1) {
    const float d = fp16_to_f32(x[i].d);
    const float m = fp16_to_f32(x[i].m);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < 16; ++j) {
      const int h0 = int((qh >> j) & 1) << 4;
      const int h1 = int((qh >> (j + 16)) & 1) << 4;
      y[j] = ((x[i].qs[j] & 0x0F) | h0) * d + m;
      y[j + 16] = ((x[i].qs[j] >> 4) | h1) * d + m;
    }
  }
}

void dequantize_row_q8_0(const block_q8_0* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK8_0; ++i, y += QK8_0) {
    const float d = fp16_to_f32(x[i].d);
    for (int j = 0; j < QK8_0; ++j) y[j] = x[i].qs[j] * d;
  }
}

}  // namespace samq
