// IQ4_NL (32-element blocks) and IQ4_XS (256-element super-blocks of 8 x 32 with 6-bit
// sub-block scales): 4-bit codes into the non-linear codebook kvalues_iq4nl
// (ggml-formats.md §2.10, §3.3). One search serves both, as in ggml's llama-quantize path
// (ntry = 7): per 32-block, best of 15 inverse scales by weighted fit quality; XS then
// quantizes the 8 block scales to 6 bits against the dominant one and re-maps the codes.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "quant/quants_ref.h"
#include "quant/search.h"

namespace samq {
namespace quant_detail {

constexpr int kNtry = 7;

// Best scale of one 32-element block: start at d = max/127, then keep the best of the inverse
// scales (k - 127)/max, k = -7..7, by weighted fit quality (sum w q x)^2 / (sum w q^2).
// 0 for a block whose maximum is below kGroupMaxEps.
float iq4_block_scale(const float* xb, const float* weight) {
  const int8_t* values = kvalues_iq4nl;
  float amax = 0, max = 0;
  for (int j = 0; j < 32; ++j) {
    const float ax = std::fabs(xb[j]);
    if (ax > amax) {
      amax = ax;
      max = xb[j];
    }
  }
  if (amax < kGroupMaxEps) return 0;
  float d = -max / values[0];
  float id = 1 / d;
  float sumqx = 0, sumq2 = 0;
  for (int j = 0; j < 32; ++j) {
    const float q = values[best_index_int8(16, values, id * xb[j])];
    const float w = weight[j];
    sumqx += w * q * xb[j];
    sumq2 += w * q * q;
  }
  d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
  float best = d * sumqx;
  for (int itry = -kNtry; itry <= kNtry; ++itry) {
    id = (itry + values[0]) / max;
    sumqx = sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
      const float q = values[best_index_int8(16, values, id * xb[j])];
      const float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

}  // namespace quant_detail

using namespace quant_detail;

namespace {
// Scales of `nblocks` consecutive 32-blocks (8 at a time on AVX2).
void iq4_block_scales(const float* x, const float* weight, int nblocks, float* scales) {
  if (nblocks == 8 && iq4_scale_search_x8(x, weight, scales)) return;
  for (int ib = 0; ib < nblocks; ++ib) scales[ib] = iq4_block_scale(x + 32 * ib, weight + 32 * ib);
}

// Element weights of a super-block of `sbs` elements: qw*sqrt(sigma^2 + x^2) with
// sigma^2 = 2*sumsq/sbs, or x^2 without importance.
void iq4_weights(const float* x, int sbs, const float* qw, float* weight) {
  float sigma2 = 0;
  for (int j = 0; j < sbs; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / sbs;
  for (int j = 0; j < sbs; ++j) weight[j] = qw ? qw[j] * std::sqrt(sigma2 + x[j] * x[j]) : x[j] * x[j];
}

void pack_iq4(const uint8_t* L, int n, uint8_t* q4) {
  for (int i = 0; i < n / 32; ++i)
    for (int j = 0; j < 16; ++j) q4[16 * i + j] = uint8_t(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

// IQ4_NL block: store the block scale, re-map codes with x * (1/d).
void iq4_finish_nl(const float* x, float d, block_iq4_nl& b) {
  uint8_t L[32];
  b.d = f32_to_fp16(d);
  const float id = d ? 1 / d : 0;
  for (int j = 0; j < 32; ++j) L[j] = uint8_t(best_index_int8(16, kvalues_iq4nl, id * x[j]));
  pack_iq4(L, 32, b.qs);
}

// IQ4_XS super-block: 6-bit block scales against the dominant one (D = -smax/32), codes
// re-mapped with each block's quantized scale.
void iq4_finish_xs(const float* x, const float* scales, block_iq4_xs& b) {
  float max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < QK_K / 32; ++ib) {
    const float abs_d = std::fabs(scales[ib]);
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
    int l = std::max(-32, std::min(31, nearest_int(id * scales[ib])));
    const float dl = d * l;
    const float idl = dl ? 1 / dl : 0.f;
    for (int j = 0; j < 32; ++j) L[32 * ib + j] = uint8_t(best_index_int8(16, kvalues_iq4nl, idl * x[32 * ib + j]));
    l += 32;
    const uint8_t l_l = uint8_t(l & 0xf), l_h = uint8_t(l >> 4);
    if (ib % 2 == 0) b.scales_l[ib / 2] = l_l;
    else b.scales_l[ib / 2] |= uint8_t(l_l << 4);
    b.scales_h |= uint16_t(l_h << 2 * (ib % 8));
  }
  pack_iq4(L, QK_K, b.qs);
}

}  // namespace

void quantize_row_iq4_nl_ref(const float* x, block_iq4_nl* y, int64_t k, const float* qw) {
  float weight[8 * 32], scales[8];
  const int64_t nb = k / QK4_NL;
  for (int64_t ib0 = 0; ib0 < nb; ib0 += 8) {
    const int g = int(std::min<int64_t>(8, nb - ib0));
    const float* xg = x + QK4_NL * ib0;
    for (int b = 0; b < g; ++b)  // each 32-block is its own super-block for sigma^2
      iq4_weights(xg + 32 * b, QK4_NL, qw ? qw + QK4_NL * (ib0 + b) : nullptr, weight + 32 * b);
    iq4_block_scales(xg, weight, g, scales);
    for (int b = 0; b < g; ++b) iq4_finish_nl(xg + 32 * b, scales[b], y[ib0 + b]);
  }
}

void quantize_row_iq4_xs_ref(const float* x, block_iq4_xs* y, int64_t k, const float* qw) {
  float weight[QK_K], scales[QK_K / 32];
  for (int64_t ib = 0; ib < k / QK_K; ++ib) {
    const float* xs = x + QK_K * ib;
    iq4_weights(xs, QK_K, qw ? qw + QK_K * ib : nullptr, weight);
    iq4_block_scales(xs, weight, QK_K / 32, scales);
    iq4_finish_xs(xs, scales, y[ib]);
  }
}

void dequantize_row_iq4_nl(const block_iq4_nl* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK4_NL; ++i, y += QK4_NL) {
    const float d = fp16_to_f32(x[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * kvalues_iq4nl[x[i].qs[j] & 0xf];
      y[j + 16] = d * kvalues_iq4nl[x[i].qs[j] >> 4];
    }
  }
}

void dequantize_row_iq4_xs(const block_iq4_xs* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / QK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    const uint8_t* qs = x[i].qs;
    for (int ib = 0; ib < QK_K / 32; ++ib, y += 32, qs += 16) {
      const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) |
                     (((x[i].scales_h >> 2 * ib) & 3) << 4);
      const float dl = d * float(ls - 32);
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * kvalues_iq4nl[qs[j] & 0xf];
        y[j + 16] = dl * kvalues_iq4nl[qs[j] >> 4];
      }
    }
  }
}

}  // namespace samq
