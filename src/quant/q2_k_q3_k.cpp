// Q2_K (2-bit affine, 16 sub-blocks of 16) and Q3_K (3-bit symmetric, 6-bit sub-block scales),
// ggml-formats.md §2.4-2.5 and §3.3. Both place one qs byte's four 2-bit codes 32 elements
// apart within a 128-element half; Q3_K's third bit lives in hmask (bit e/32 of byte e%32).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "quant/quants_ref.h"
#include "quant/search.h"

namespace samq {
using namespace quant_detail;

namespace {

// Four 2-bit codes per byte: qs[32h + l] holds elements 128h + l + {0, 32, 64, 96}.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                              (L[j + l + 96] << 6));
}

// Q2_K second pass: codes from the stored fp16 d/dmin and 4-bit scale/min of each sub-block.
void q2_requantize(const float* x, const block_q2_K& b, uint8_t* L) {
  const float dall = fp16_to_f32(b.d), mall = fp16_to_f32(b.dmin);
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = dall * (b.scales[j] & 0xF);
    if (!d) continue;
    const float dm = mall * (b.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int((x[16 * j + ii] + dm) / d);
      L[16 * j + ii] = uint8_t(std::max(0, std::min(3, l)));
    }
  }
}

// Q3_K: store the 6-bit offset scale l (0..63) of sub-block j.
void q3_put_scale(uint8_t* scales, int j, int l) {
  if (j < 8) scales[j] = uint8_t(l & 0xF);
  else scales[j - 8] |= uint8_t((l & 0xF) << 4);
  l >>= 4;
  scales[j % 4 + 8] |= uint8_t(l << (2 * (j / 4)));
}

int q3_get_scale(const uint8_t* scales, int j) {
  const int lo = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  return (lo | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

// Q3_K second pass and packing (codes 0..7 = q + 4; bit 2 goes to hmask).
void q3_requantize_pack(const float* x, block_q3_K& b, int8_t* L) {
  const float dall = fp16_to_f32(b.d);
  for (int j = 0; j < QK_K / 16; ++j) {
    const int8_t sc = int8_t(q3_get_scale(b.scales, j));
    const float d = dall * sc;
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = int8_t(std::max(-4, std::min(3, l)) + 4);
    }
  }
  std::memset(b.hmask, 0, sizeof b.hmask);
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

// Codes, scales and positive mins of the 16 sub-blocks of 16 of one Q2_K super-block by the
// affine search with weights w: eight sub-blocks at a time through the SIMD search, else ggml's
// scalar one (make_qkx2_quants on the plain path, which uses the mean absolute deviation;
// make_qkx3_quants on the weighted path). Both give the same bytes.
void q2_sub_block_search(const float* x, const float* w, uint8_t* L, float* scales, float* mins, float rmin,
                         float rdelta, int nstep, bool use_mad) {
  uint8_t Laux[16];
  for (int half = 0; half < 2; ++half) {
    const int o = 128 * half;
    if (affine_search_x8(16, 3, x + o, w + o, L + o, scales + 8 * half, mins + 8 * half, rmin, rdelta, nstep,
                         use_mad))
      continue;
    for (int j = 8 * half; j < 8 * half + 8; ++j)
      scales[j] = use_mad ? make_qkx2_quants(16, 3, x + 16 * j, w + 16 * j, L + 16 * j, &mins[j], Laux, rmin,
                                             rdelta, nstep, true)
                          : make_qkx3_quants(16, 3, x + 16 * j, w + 16 * j, L + 16 * j, &mins[j], Laux, rmin,
                                             rdelta, nstep, false);
  }
}

}  // namespace

void quantize_row_q2_K_ref(const float* x, block_q2_K* y, int64_t k) {
  uint8_t L[QK_K];
  float weights[QK_K], mins[QK_K / 16], scales[QK_K / 16];
  const float q4scale = 15.f;
  for (int64_t i = 0; i < k / QK_K; ++i, x += QK_K) {
    for (int l = 0; l < QK_K; ++l) weights[l] = std::fabs(x[l]);
    q2_sub_block_search(x, weights, L, scales, mins, -0.5f, 0.1f, 15, true);
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      const float iscale = q4scale / max_scale;
      for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = uint8_t(nearest_int(iscale * scales[j]));
      y[i].d = f32_to_fp16(max_scale / q4scale);
    } else {
      std::memset(y[i].scales, 0, sizeof y[i].scales);
      y[i].d = f32_to_fp16(0.f);
    }
    if (max_min > 0) {
      const float iscale = q4scale / max_min;
      for (int j = 0; j < QK_K / 16; ++j)
        y[i].scales[j] |= uint8_t(nearest_int(iscale * mins[j]) << 4);
      y[i].dmin = f32_to_fp16(max_min / q4scale);
    } else {
      y[i].dmin = f32_to_fp16(0.f);
    }
    q2_requantize(x, y[i], L);
    pack_2bit(L, y[i].qs);
  }
}

void quantize_row_q2_K_weighted(const float* x, block_q2_K* y, int64_t n_per_row, const float* qw) {
  uint8_t L[QK_K], Ls[QK_K / 16], Lm[QK_K / 16];
  float mins[QK_K / 16], scales[QK_K / 16], sw[QK_K / 16], weight[QK_K];
  for (int64_t i = 0; i < n_per_row / QK_K; ++i, x += QK_K) {
    float sumx2 = 0;
    for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
    const float sigma2 = sumx2 / QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
      const float* w = qw + QK_K * i + 16 * j;
      float* wj = weight + 16 * j;
      for (int l = 0; l < 16; ++l) wj[l] = w[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      sw[j] = 0;
      for (int l = 0; l < 16; ++l) sw[j] += wj[l];
    }
    q2_sub_block_search(x, weight, L, scales, mins, -0.9f, 0.05f, 36, false);
    const float dm = make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
    const float mm = make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
    y[i].d = f32_to_fp16(dm);
    y[i].dmin = f32_to_fp16(mm);
    for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = uint8_t(Ls[j] | (Lm[j] << 4));
    q2_requantize(x, y[i], L);
    pack_2bit(L, y[i].qs);
  }
}

void dequantize_row_q2_K(const block_q2_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d), min = fp16_to_f32(x[i].dmin);
    for (int e = 0; e < QK_K; ++e) {
      const int h = e / 128, g = (e % 128) / 32, l = e % 32;
      const uint8_t sc = x[i].scales[e / 16];
      const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
      const int q = (x[i].qs[32 * h + l] >> (2 * g)) & 3;
      *y++ = dl * float(q) - ml;
    }
  }
}

void quantize_row_q3_K_ref(const float* x, block_q3_K* y, int64_t k) {
  int8_t L[QK_K];
  float scales[QK_K / 16];
  for (int64_t i = 0; i < k / QK_K; ++i, x += QK_K) {
    float max_scale = 0, amax = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
      scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
      const float scale = std::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    std::memset(y[i].scales, 0, sizeof y[i].scales);
    if (max_scale) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < QK_K / 16; ++j) {
        int8_t l = int8_t(nearest_int(iscale * scales[j]));
        l = int8_t(std::max(-32, std::min(31, int(l))) + 32);
        q3_put_scale(y[i].scales, j, l);
      }
      y[i].d = f32_to_fp16(1 / iscale);
    } else {
      y[i].d = f32_to_fp16(0.f);
    }
    q3_requantize_pack(x, y[i], L);
  }
}

void quantize_row_q3_K_weighted(const float* x, block_q3_K* y, int64_t n_per_row, const float* qw) {
  int8_t L[QK_K], Ls[QK_K / 16];
  float scales[QK_K / 16], weight[QK_K], sw[QK_K / 16];
  for (int64_t i = 0; i < n_per_row / QK_K; ++i, x += QK_K) {
    float sumx2 = 0;
    for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
    const float sigma2 = 2 * sumx2 / QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
      const float* w = qw + QK_K * i + 16 * j;
      float* wj = weight + 16 * j;
      for (int l = 0; l < 16; ++l) wj[l] = w[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 16; ++l) sumw += wj[l];
      sw[j] = sumw;
    }
    for (int half = 0; half < 2; ++half) {
      const int o = 128 * half;
      if (!symmetric_search_x8(16, 4, x + o, weight + o, L + o, scales + 8 * half))
        for (int j = 8 * half; j < 8 * half + 8; ++j)
          scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, weight + 16 * j);
    }
    std::memset(y[i].scales, 0, sizeof y[i].scales);
    const float d_block = make_qx_quants(QK_K / 16, 32, scales, Ls, 1, sw);
    for (int j = 0; j < QK_K / 16; ++j) q3_put_scale(y[i].scales, j, Ls[j]);
    y[i].d = f32_to_fp16(d_block);
    q3_requantize_pack(x, y[i], L);
  }
}

void dequantize_row_q3_K(const block_q3_K* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) {
    const float d_all = fp16_to_f32(x[i].d);
    for (int e = 0; e < QK_K; ++e) {
      const int h = e / 128, g = (e % 128) / 32, l = e % 32;
      const float dl = d_all * float(q3_get_scale(x[i].scales, e / 16));
      const int low = (x[i].qs[32 * h + l] >> (2 * g)) & 3;
      const int hbit = (x[i].hmask[l] >> (e / 32)) & 1;
      *y++ = dl * float(low - (hbit ? 0 : 4));
    }
  }
}

}  // namespace samq
