// Per-element level grids of ggml blocks and level packing (quant/gptq_grid.h), in one source for
// the CPU and the GPU's GPTQ (core/hd.h).
#pragma once
#include <cmath>
#include <cstdint>

#include "core/fp16.h"
#include "core/ggml_type.h"
#include "core/hd.h"
#include "quant/blocks.h"
#include "quant/kquants_impl.h"

namespace samq {

// The grid of one element of a block: value(q) = a * float(kvalues_iq4nl[q]) (lut) or a * float(q) - b.
struct ElemGrid {
  float a = 0, b = 0;
  int qmin = 0, qmax = 0;
  bool lut = false;

  SAMQ_HD float value(int q) const { return lut ? a * float(iq4nl_table().v[q]) : a * float(q) - b; }

  // The level whose value is nearest to w (ties: the lower level).
  SAMQ_HD int nearest(float w) const {
    if (lut) {
      int best = qmin;
      float be = hd::fabs(value(qmin) - w);
      for (int q = qmin + 1; q <= qmax; ++q) {
        const float e = hd::fabs(value(q) - w);
        if (e < be) be = e, best = q;
      }
      return best;
    }
    if (a == 0.0f) return qmin < 0 && qmax >= 0 ? 0 : qmin;
#if defined(__CUDA_ARCH__)
    int q = int(::lround(double(w + b) / double(a)));
#else
    int q = int(std::lround(double(w + b) / double(a)));
#endif
    if (q < qmin) q = qmin;
    if (q > qmax) q = qmax;
    // Float rounding of a*q - b: settle on the exactly nearest neighbour.
    int best = q;
    float be = hd::fabs(value(q) - w);
    for (int c = q - 1; c <= q + 1; c += 2) {
      if (c < qmin || c > qmax) continue;
      const float e = hd::fabs(value(c) - w);
      if (e < be || (e == be && c < best)) be = e, best = c;
    }
    return best;
  }
};

namespace grid_detail {

SAMQ_HD inline int q3_scale(const uint8_t* scales, int j) {
  const int lo = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  return (lo | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

// Nibble of element j (0..31) in a legacy-order 16-byte array: j < 16 low nibbles, else high.
SAMQ_HD inline int get_nib32(const uint8_t* qs, int j) { return j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4; }
SAMQ_HD inline void set_nib32(uint8_t* qs, int j, int v) {
  if (j < 16) qs[j] = uint8_t((qs[j] & 0xF0) | v);
  else qs[j - 16] = uint8_t((qs[j - 16] & 0x0F) | (v << 4));
}
// K-quant 4-bit layout (Q4_K/Q5_K): chunks of 64, first 32 low nibbles, next 32 high nibbles.
SAMQ_HD inline int get_nibk(const uint8_t* qs, int e) {
  const int c = e / 64, r = e % 64;
  return r < 32 ? qs[32 * c + r] & 0xF : qs[32 * c + r - 32] >> 4;
}
SAMQ_HD inline void set_nibk(uint8_t* qs, int e, int v) {
  const int c = e / 64, r = e % 64;
  uint8_t& b = qs[32 * c + (r % 32)];
  b = r < 32 ? uint8_t((b & 0xF0) | v) : uint8_t((b & 0x0F) | (v << 4));
}
// 2-bit layout (Q2_K/Q3_K low bits, Q6_K high bits): halves of 128, 4 groups of 32 per byte.
SAMQ_HD inline int get_2bit(const uint8_t* qs, int e) {
  const int h = e / 128, g = (e % 128) / 32, l = e % 32;
  return (qs[32 * h + l] >> (2 * g)) & 3;
}
SAMQ_HD inline void set_2bit(uint8_t* qs, int e, int v) {
  const int h = e / 128, g = (e % 128) / 32, l = e % 32;
  uint8_t& b = qs[32 * h + l];
  b = uint8_t((b & ~(3 << (2 * g))) | (v << (2 * g)));
}

}  // namespace grid_detail

// The grid of element e of a packed block of type t (one of grid_supported's types).
SAMQ_HD inline ElemGrid elem_grid(GgmlType t, const void* blk, int e) {
  using namespace grid_detail;
  switch (t) {
    case GgmlType::Q2_K: {
      const auto& x = *static_cast<const block_q2_K*>(blk);
      const uint8_t sc = x.scales[e / 16];
      return {fp16_to_f32(x.d) * (sc & 0xF), fp16_to_f32(x.dmin) * (sc >> 4), 0, 3, false};
    }
    case GgmlType::Q3_K: {
      const auto& x = *static_cast<const block_q3_K*>(blk);
      return {fp16_to_f32(x.d) * float(q3_scale(x.scales, e / 16)), 0.0f, -4, 3, false};
    }
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: {
      const bool q5 = t == GgmlType::Q5_K;
      const uint8_t* scales = q5 ? static_cast<const block_q5_K*>(blk)->scales : static_cast<const block_q4_K*>(blk)->scales;
      const uint16_t dh = q5 ? static_cast<const block_q5_K*>(blk)->d : static_cast<const block_q4_K*>(blk)->d;
      const uint16_t mh = q5 ? static_cast<const block_q5_K*>(blk)->dmin : static_cast<const block_q4_K*>(blk)->dmin;
      uint8_t sc, m;
      quant_detail::get_scale_min_k4(e / 32, scales, &sc, &m);
      return {fp16_to_f32(dh) * sc, fp16_to_f32(mh) * m, 0, q5 ? 31 : 15, false};
    }
    case GgmlType::Q6_K: {
      const auto& x = *static_cast<const block_q6_K*>(blk);
      return {fp16_to_f32(x.d) * x.scales[e / 16], 0.0f, -32, 31, false};
    }
    case GgmlType::Q8_0: return {fp16_to_f32(static_cast<const block_q8_0*>(blk)->d), 0.0f, -128, 127, false};
    case GgmlType::Q4_0: return {fp16_to_f32(static_cast<const block_q4_0*>(blk)->d), 0.0f, -8, 7, false};
    case GgmlType::Q5_0: return {fp16_to_f32(static_cast<const block_q5_0*>(blk)->d), 0.0f, -16, 15, false};
    case GgmlType::Q4_1: {
      const auto& x = *static_cast<const block_q4_1*>(blk);
      return {fp16_to_f32(x.d), -fp16_to_f32(x.m), 0, 15, false};
    }
    case GgmlType::Q5_1: {
      const auto& x = *static_cast<const block_q5_1*>(blk);
      return {fp16_to_f32(x.d), -fp16_to_f32(x.m), 0, 31, false};
    }
    case GgmlType::IQ4_NL: return {fp16_to_f32(static_cast<const block_iq4_nl*>(blk)->d), 0.0f, 0, 15, true};
    case GgmlType::IQ4_XS: {
      const auto& x = *static_cast<const block_iq4_xs*>(blk);
      const int ib = e / 32;
      const int ls = ((x.scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((x.scales_h >> 2 * ib) & 3) << 4);
      return {fp16_to_f32(x.d) * float(ls - 32), 0.0f, 0, 15, true};
    }
    default: return {};
  }
}

// Replaces the block's level bits with `levels` (each within its element's [qmin, qmax], which the
// caller guarantees; set_block_levels checks it); scales, mins and d are left untouched.
SAMQ_HD inline void set_block_levels_unchecked(GgmlType t, void* blk, const int* L) {
  using namespace grid_detail;
  switch (t) {
    case GgmlType::Q2_K: {
      auto& x = *static_cast<block_q2_K*>(blk);
      for (int e = 0; e < QK_K; ++e) set_2bit(x.qs, e, L[e]);
      return;
    }
    case GgmlType::Q3_K: {
      auto& x = *static_cast<block_q3_K*>(blk);
      for (int e = 0; e < QK_K; ++e) {
        const int c = L[e] + 4;
        set_2bit(x.qs, e, c & 3);
        uint8_t& h = x.hmask[e % 32];
        h = uint8_t((h & ~(1 << (e / 32))) | ((c >> 2) << (e / 32)));
      }
      return;
    }
    case GgmlType::Q4_K: {
      auto& x = *static_cast<block_q4_K*>(blk);
      for (int e = 0; e < QK_K; ++e) set_nibk(x.qs, e, L[e]);
      return;
    }
    case GgmlType::Q5_K: {
      auto& x = *static_cast<block_q5_K*>(blk);
      for (int e = 0; e < QK_K; ++e) {
        set_nibk(x.qs, e, L[e] & 0xF);
        const int bit = 2 * (e / 64) + ((e % 64) >= 32);
        uint8_t& h = x.qh[e % 32];
        h = uint8_t((h & ~(1 << bit)) | ((L[e] >> 4) << bit));
      }
      return;
    }
    case GgmlType::Q6_K: {
      auto& x = *static_cast<block_q6_K*>(blk);
      for (int e = 0; e < QK_K; ++e) {
        const int c = L[e] + 32;
        const int h = e / 128, g = (e % 128) / 32, l = e % 32;
        uint8_t& qlb = x.ql[64 * h + l + 32 * (g & 1)];
        qlb = g < 2 ? uint8_t((qlb & 0xF0) | (c & 0xF)) : uint8_t((qlb & 0x0F) | ((c & 0xF) << 4));
        set_2bit(x.qh, e, c >> 4);
      }
      return;
    }
    case GgmlType::Q8_0: {
      auto& x = *static_cast<block_q8_0*>(blk);
      for (int e = 0; e < 32; ++e) x.qs[e] = int8_t(L[e]);
      return;
    }
    case GgmlType::Q4_0:
      for (int e = 0; e < 32; ++e) set_nib32(static_cast<block_q4_0*>(blk)->qs, e, L[e] + 8);
      return;
    case GgmlType::Q4_1:
      for (int e = 0; e < 32; ++e) set_nib32(static_cast<block_q4_1*>(blk)->qs, e, L[e]);
      return;
    case GgmlType::Q5_0:
    case GgmlType::Q5_1: {
      const bool one = t == GgmlType::Q5_1;
      uint8_t* qs = one ? static_cast<block_q5_1*>(blk)->qs : static_cast<block_q5_0*>(blk)->qs;
      uint8_t* qhp = one ? static_cast<block_q5_1*>(blk)->qh : static_cast<block_q5_0*>(blk)->qh;
      uint32_t qh = 0;
      for (int e = 0; e < 32; ++e) {
        const int c = L[e] + (one ? 0 : 16);
        set_nib32(qs, e, c & 0xF);
        qh |= uint32_t(c >> 4) << e;
      }
      for (int k = 0; k < 4; ++k) qhp[k] = uint8_t(qh >> (8 * k));
      return;
    }
    case GgmlType::IQ4_NL:
      for (int e = 0; e < 32; ++e) set_nib32(static_cast<block_iq4_nl*>(blk)->qs, e, L[e]);
      return;
    case GgmlType::IQ4_XS: {
      auto& x = *static_cast<block_iq4_xs*>(blk);
      for (int e = 0; e < QK_K; ++e) set_nib32(x.qs + 16 * (e / 32), e % 32, L[e]);
      return;
    }
    default:
      return;
  }
}

}  // namespace samq
