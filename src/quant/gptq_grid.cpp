// Per-element grids and level packing of ggml blocks (quant/gptq_grid.h).
#include "quant/gptq_grid.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/quants_ref.h"

namespace samq {

int ElemGrid::nearest(float w) const {
  if (table) {
    int best = qmin;
    float be = std::fabs(value(qmin) - w);
    for (int q = qmin + 1; q <= qmax; ++q) {
      const float e = std::fabs(value(q) - w);
      if (e < be) be = e, best = q;
    }
    return best;
  }
  if (a == 0.0f) return qmin < 0 && qmax >= 0 ? 0 : qmin;
  int q = int(std::lround(double(w + b) / double(a)));
  if (q < qmin) q = qmin;
  if (q > qmax) q = qmax;
  // Float rounding of a*q - b: settle on the exactly nearest neighbour.
  int best = q;
  float be = std::fabs(value(q) - w);
  for (int c : {q - 1, q + 1}) {
    if (c < qmin || c > qmax) continue;
    const float e = std::fabs(value(c) - w);
    if (e < be || (e == be && c < best)) be = e, best = c;
  }
  return best;
}

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

int q3_scale(const uint8_t* scales, int j) {
  const int lo = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  return (lo | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

// Nibble of element j (0..31) in a legacy-order 16-byte array: j < 16 low nibbles, else high.
int get_nib32(const uint8_t* qs, int j) { return j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4; }
void set_nib32(uint8_t* qs, int j, int v) {
  if (j < 16) qs[j] = uint8_t((qs[j] & 0xF0) | v);
  else qs[j - 16] = uint8_t((qs[j - 16] & 0x0F) | (v << 4));
}
// K-quant 4-bit layout (Q4_K/Q5_K): chunks of 64, first 32 low nibbles, next 32 high nibbles.
int get_nibk(const uint8_t* qs, int e) {
  const int c = e / 64, r = e % 64;
  return r < 32 ? qs[32 * c + r] & 0xF : qs[32 * c + r - 32] >> 4;
}
void set_nibk(uint8_t* qs, int e, int v) {
  const int c = e / 64, r = e % 64;
  uint8_t& b = qs[32 * c + (r % 32)];
  b = r < 32 ? uint8_t((b & 0xF0) | v) : uint8_t((b & 0x0F) | (v << 4));
}
// 2-bit layout (Q2_K/Q3_K low bits, Q6_K high bits): halves of 128, 4 groups of 32 per byte.
int get_2bit(const uint8_t* qs, int e) {
  const int h = e / 128, g = (e % 128) / 32, l = e % 32;
  return (qs[32 * h + l] >> (2 * g)) & 3;
}
void set_2bit(uint8_t* qs, int e, int v) {
  const int h = e / 128, g = (e % 128) / 32, l = e % 32;
  uint8_t& b = qs[32 * h + l];
  b = uint8_t((b & ~(3 << (2 * g))) | (v << (2 * g)));
}

void check(const ElemGrid& g, int q, GgmlType t, int e) {
  if (q < g.qmin || q > g.qmax) fail("gptq: level {} of element {} is outside [{}, {}] for {}", q, e, g.qmin, g.qmax, ggml_type_name(t));
}

// The one grid of all 32 elements of a legacy (or IQ4_NL) block: scale d, offset -m where the
// block has one, levels qmin..qmax (through `table` for IQ4_NL).
template <typename B>
void legacy_grid(const void* blk, int qmin, int qmax, const int8_t* table, ElemGrid* out) {
  const auto& x = *static_cast<const B*>(blk);
  const float d = fp16_to_f32(x.d);
  float b = 0.0f;
  if constexpr (requires { x.m; }) b = -fp16_to_f32(x.m);
  for (int e = 0; e < 32; ++e) out[e] = {d, b, qmin, qmax, table};
}

}  // namespace

void block_grid(GgmlType t, const void* blk, ElemGrid* out) {
  switch (t) {
    case GgmlType::Q2_K: {
      const auto& x = *static_cast<const block_q2_K*>(blk);
      const float d = fp16_to_f32(x.d), mn = fp16_to_f32(x.dmin);
      for (int e = 0; e < QK_K; ++e) {
        const uint8_t sc = x.scales[e / 16];
        out[e] = {d * (sc & 0xF), mn * (sc >> 4), 0, 3, nullptr};
      }
      return;
    }
    case GgmlType::Q3_K: {
      const auto& x = *static_cast<const block_q3_K*>(blk);
      const float d = fp16_to_f32(x.d);
      for (int e = 0; e < QK_K; ++e) out[e] = {d * float(q3_scale(x.scales, e / 16)), 0.0f, -4, 3, nullptr};
      return;
    }
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: {
      const bool q5 = t == GgmlType::Q5_K;
      const uint8_t* scales = q5 ? static_cast<const block_q5_K*>(blk)->scales : static_cast<const block_q4_K*>(blk)->scales;
      const uint16_t dh = q5 ? static_cast<const block_q5_K*>(blk)->d : static_cast<const block_q4_K*>(blk)->d;
      const uint16_t mh = q5 ? static_cast<const block_q5_K*>(blk)->dmin : static_cast<const block_q4_K*>(blk)->dmin;
      const float d = fp16_to_f32(dh), mn = fp16_to_f32(mh);
      for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales, &sc, &m);
        for (int l = 0; l < 32; ++l) out[32 * j + l] = {d * sc, mn * m, 0, q5 ? 31 : 15, nullptr};
      }
      return;
    }
    case GgmlType::Q6_K: {
      const auto& x = *static_cast<const block_q6_K*>(blk);
      const float d = fp16_to_f32(x.d);
      for (int e = 0; e < QK_K; ++e) out[e] = {d * x.scales[e / 16], 0.0f, -32, 31, nullptr};
      return;
    }
    case GgmlType::Q8_0: return legacy_grid<block_q8_0>(blk, -128, 127, nullptr, out);
    case GgmlType::Q4_0: return legacy_grid<block_q4_0>(blk, -8, 7, nullptr, out);
    case GgmlType::Q5_0: return legacy_grid<block_q5_0>(blk, -16, 15, nullptr, out);
    case GgmlType::Q4_1: return legacy_grid<block_q4_1>(blk, 0, 15, nullptr, out);
    case GgmlType::Q5_1: return legacy_grid<block_q5_1>(blk, 0, 31, nullptr, out);
    case GgmlType::IQ4_NL: return legacy_grid<block_iq4_nl>(blk, 0, 15, kvalues_iq4nl, out);
    case GgmlType::IQ4_XS: {
      const auto& x = *static_cast<const block_iq4_xs*>(blk);
      const float d = fp16_to_f32(x.d);
      for (int ib = 0; ib < 8; ++ib) {
        const int ls = ((x.scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((x.scales_h >> 2 * ib) & 3) << 4);
        for (int l = 0; l < 32; ++l) out[32 * ib + l] = {d * float(ls - 32), 0.0f, 0, 15, kvalues_iq4nl};
      }
      return;
    }
    default:
      fail("gptq: type {} has no level grid", ggml_type_name(t));
  }
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
      std::memcpy(qhp, &qh, 4);
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
      fail("gptq: type {} has no level grid", ggml_type_name(t));
  }
}

}  // namespace samq
