// Per-element grids and level packing of ggml blocks (quant/gptq_grid.h).
#include "quant/gptq_grid.h"

#include "quant/gptq_grid_impl.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/quants_ref.h"

namespace samq {

bool grid_supported(GgmlType t) {
  switch (t) {
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
    case GgmlType::Q8_0: case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1:
    case GgmlType::IQ4_NL: case GgmlType::IQ4_XS:
      return true;
    default:
      return false;
  }
}

int grid_block_size(GgmlType t) {
  if (!grid_supported(t)) fail("gptq: type {} has no level grid", ggml_type_name(t));
  return int(ggml_type_info(t).block_size);
}

namespace {

using namespace grid_detail;

void check(const ElemGrid& g, int q, GgmlType t, int e) {
  if (q < g.qmin || q > g.qmax) fail("gptq: level {} of element {} is outside [{}, {}] for {}", q, e, g.qmin, g.qmax, ggml_type_name(t));
}

}  // namespace

void block_grid(GgmlType t, const void* blk, ElemGrid* out) {
  const int bs = grid_block_size(t);  // throws for a type without grids
  for (int e = 0; e < bs; ++e) out[e] = elem_grid(t, blk, e);
}

void get_block_levels(GgmlType t, const void* blk, int* L) {
  switch (t) {
    case GgmlType::Q2_K: {
      const auto& x = *static_cast<const block_q2_K*>(blk);
      for (int e = 0; e < QK_K; ++e) L[e] = get_2bit(x.qs, e);
      return;
    }
    case GgmlType::Q3_K: {
      const auto& x = *static_cast<const block_q3_K*>(blk);
      for (int e = 0; e < QK_K; ++e) L[e] = get_2bit(x.qs, e) + 4 * ((x.hmask[e % 32] >> (e / 32)) & 1) - 4;
      return;
    }
    case GgmlType::Q4_K: {
      const auto& x = *static_cast<const block_q4_K*>(blk);
      for (int e = 0; e < QK_K; ++e) L[e] = get_nibk(x.qs, e);
      return;
    }
    case GgmlType::Q5_K: {
      const auto& x = *static_cast<const block_q5_K*>(blk);
      for (int e = 0; e < QK_K; ++e) {
        const int bit = 2 * (e / 64) + ((e % 64) >= 32);
        L[e] = get_nibk(x.qs, e) + 16 * ((x.qh[e % 32] >> bit) & 1);
      }
      return;
    }
    case GgmlType::Q6_K: {
      const auto& x = *static_cast<const block_q6_K*>(blk);
      for (int e = 0; e < QK_K; ++e) {
        const int h = e / 128, g = (e % 128) / 32, l = e % 32;
        const uint8_t qlb = x.ql[64 * h + l + 32 * (g & 1)];
        const int low4 = g < 2 ? (qlb & 0xF) : (qlb >> 4);
        L[e] = (low4 | (get_2bit(x.qh, e) << 4)) - 32;
      }
      return;
    }
    case GgmlType::Q8_0: {
      const auto& x = *static_cast<const block_q8_0*>(blk);
      for (int e = 0; e < 32; ++e) L[e] = x.qs[e];
      return;
    }
    case GgmlType::Q4_0:
      for (int e = 0; e < 32; ++e) L[e] = get_nib32(static_cast<const block_q4_0*>(blk)->qs, e) - 8;
      return;
    case GgmlType::Q4_1:
      for (int e = 0; e < 32; ++e) L[e] = get_nib32(static_cast<const block_q4_1*>(blk)->qs, e);
      return;
    case GgmlType::Q5_0:
    case GgmlType::Q5_1: {
      const bool one = t == GgmlType::Q5_1;
      const uint8_t* qs = one ? static_cast<const block_q5_1*>(blk)->qs : static_cast<const block_q5_0*>(blk)->qs;
      const uint8_t* qhp = one ? static_cast<const block_q5_1*>(blk)->qh : static_cast<const block_q5_0*>(blk)->qh;
      uint32_t qh;
      std::memcpy(&qh, qhp, 4);
      for (int e = 0; e < 32; ++e) L[e] = (get_nib32(qs, e) | int(((qh >> e) & 1) << 4)) - (one ? 0 : 16);
      return;
    }
    case GgmlType::IQ4_NL:
      for (int e = 0; e < 32; ++e) L[e] = get_nib32(static_cast<const block_iq4_nl*>(blk)->qs, e);
      return;
    case GgmlType::IQ4_XS: {
      const auto& x = *static_cast<const block_iq4_xs*>(blk);
      for (int e = 0; e < QK_K; ++e) L[e] = get_nib32(x.qs + 16 * (e / 32), e % 32);
      return;
    }
    default:
      fail("gptq: type {} has no level grid", ggml_type_name(t));
  }
}

void set_block_levels(GgmlType t, void* blk, const int* L) {
  const int bs = grid_block_size(t);
  ElemGrid g[QK_K];
  block_grid(t, blk, g);
  for (int e = 0; e < bs; ++e) check(g[e], L[e], t, e);
  set_block_levels_unchecked(t, blk, L);
}

}  // namespace samq
