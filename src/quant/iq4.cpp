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
using namespace quant_detail;

namespace {

constexpr int kNtry = 7;

// Quantizes one super-block of `sbs` elements (32 for NL, 256 for XS). For NL, scales_h and
// scales_l are unused. L and scales are scratch owned by the caller (L keeps ggml's
// carry-over semantics for sub-blocks whose maximum is below kGroupMaxEps).
void iq4_superblock(int sbs, const float* x, uint16_t* dh, uint8_t* q4, uint16_t* scales_h,
                    uint8_t* scales_l, float* scales, uint8_t* L, const float* qw) {
  const int8_t* values = kvalues_iq4nl;
  const int bs = 32;
  float weight[32];
  float sigma2 = 0;
  for (int j = 0; j < sbs; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / sbs;

  std::memset(q4, 0, size_t(sbs / 2));
  dh[0] = f32_to_fp16(0.f);

  float max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < sbs / bs; ++ib) {
    const float* xb = x + ib * bs;
    uint8_t* Lb = L + ib * bs;
    if (qw) {
      const float* w = qw + ib * bs;
      for (int j = 0; j < bs; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    } else {
      for (int j = 0; j < bs; ++j) weight[j] = xb[j] * xb[j];
    }
    float amax = 0, max = 0;
    for (int j = 0; j < bs; ++j) {
      const float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    if (amax < kGroupMaxEps) {
      scales[ib] = 0;
      continue;
    }
    float d = -max / values[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < bs; ++j) {
      const float al = id * xb[j];
      const int l = best_index_int8(16, values, al);
      Lb[j] = uint8_t(l);
      const float q = values[l];
      const float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -kNtry; itry <= kNtry; ++itry) {
      id = (itry + values[0]) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < bs; ++j) {
        const float al = id * xb[j];
        const int l = best_index_int8(16, values, al);
        const float q = values[l];
        const float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    const float abs_d = std::fabs(d);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = d;
    }
  }

  if (sbs / bs > 1) {
    *scales_h = 0;
    const float d = -max_scale / 32;
    dh[0] = f32_to_fp16(d);
    const float id = d ? 1 / d : 0.f;
    for (int ib = 0; ib < sbs / bs; ++ib) {
      int l = std::max(-32, std::min(31, nearest_int(id * scales[ib])));
      const float dl = d * l;
      const float idl = dl ? 1 / dl : 0.f;
      uint8_t* Lb = L + ib * bs;
      const float* xb = x + ib * bs;
      for (int j = 0; j < bs; ++j) Lb[j] = uint8_t(best_index_int8(16, values, idl * xb[j]));
      l += 32;
      const uint8_t l_l = uint8_t(l & 0xf), l_h = uint8_t(l >> 4);
      if (ib % 2 == 0) scales_l[ib / 2] = l_l;
      else scales_l[ib / 2] |= uint8_t(l_l << 4);
      *scales_h |= uint16_t(l_h << 2 * (ib % 8));
    }
  } else {
    dh[0] = f32_to_fp16(scales[0]);
    const float id = scales[0] ? 1 / scales[0] : 0;
    for (int j = 0; j < sbs; ++j) L[j] = uint8_t(best_index_int8(16, values, id * x[j]));
  }

  for (int i = 0; i < sbs / 32; ++i)
    for (int j = 0; j < 16; ++j) q4[16 * i + j] = uint8_t(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

}  // namespace

void quantize_row_iq4_nl_ref(const float* x, block_iq4_nl* y, int64_t k, const float* qw) {
  uint8_t L[QK4_NL] = {};
  float scale;
  uint16_t unused_h;
  for (int64_t ib = 0; ib < k / QK4_NL; ++ib)
    iq4_superblock(QK4_NL, x + QK4_NL * ib, &y[ib].d, y[ib].qs, &unused_h, nullptr, &scale, L,
                   qw ? qw + QK4_NL * ib : nullptr);
}

void quantize_row_iq4_xs_ref(const float* x, block_iq4_xs* y, int64_t k, const float* qw) {
  uint8_t L[QK_K] = {};
  float scales[QK_K / 32];
  for (int64_t ib = 0; ib < k / QK_K; ++ib)
    iq4_superblock(QK_K, x + QK_K * ib, &y[ib].d, y[ib].qs, &y[ib].scales_h, y[ib].scales_l,
                   scales, L, qw ? qw + QK_K * ib : nullptr);
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
