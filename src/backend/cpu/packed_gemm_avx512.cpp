// AVX-512 VNNI kernel of packed_gemm.h: a tile of 16 weight rows (one zmm lane per row) x NT
// tokens (1..8). Per sub-block: int32 sums start at -off * sum(x), one vpdpbusd per (4 k-values,
// token) with the token's 4 activation bytes broadcast; converted and multiplied by the per-row
// scale vector into a per-superblock float sum, which is scaled by the activation block's d at
// the end of the superblock. Affine types add min * (-d * sum(x)) per sub-block. Same operation
// order as packed_gemm_ref (which uses separate multiply and add where this uses FMA).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "backend/cpu/packed_gemm.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")

namespace samq::cpu {
namespace {

inline int32_t load32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Codes of k-groups kg and kg+1 as two u8 vectors (nibble layout: one load).
// NIB 2: nibbles are indices into kvalues_iq4nl + 128.
template <int NIB>
inline void codes2(const uint8_t* blk, int kg, __m512i& w0, __m512i& w1) {
  if constexpr (NIB != 0) {
    const __m512i v = _mm512_load_si512(blk + 64 * (kg / 2));
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    w0 = _mm512_and_si512(v, m4);
    w1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    if constexpr (NIB == 2) {
      const __m512i lut = _mm512_broadcast_i32x4(
          _mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, (char)129, (char)141, (char)153, (char)166, (char)181,
                        (char)197, (char)217, (char)241));
      w0 = _mm512_shuffle_epi8(lut, w0);
      w1 = _mm512_shuffle_epi8(lut, w1);
    }
  } else {
    w0 = _mm512_load_si512(blk + 64 * kg);
    w1 = _mm512_load_si512(blk + 64 * (kg + 1));
  }
}

template <int NT, int S, bool MIN, int NIB>
void tile(const PackedWeight& p, const PackedActs& a, int64_t g, int64_t t0, float* y, int64_t ys, int nvalid) {
  const int J = p.J;
  const int64_t SB = p.SB;
  __m512 acc[NT];
  const int8_t* xq[NT];
  const int32_t* xo[NT];
  const int32_t* xp[NT];
  const float* xd[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm512_setzero_ps();
    xq[t] = a.q.data() + (t0 + t) * a.cols;
    xo[t] = a.xoff.data() + (t0 + t) * a.nsub;
    xp[t] = MIN ? a.xpair.data() + (t0 + t) * a.nsub / 2 : nullptr;
    xd[t] = a.d.data() + (t0 + t) * a.nsb;
  }
  for (int64_t b = 0; b < p.nsb; ++b) {
    const uint8_t* blk = p.block(g, b);
    __m512i isum[NT];
    for (int j = 0; j < J; ++j) {
      __m512i s[NT];
      for (int t = 0; t < NT; ++t) s[t] = _mm512_set1_epi32(xo[t][b * J + j]);
      const int kg0 = j * (S / 4);
      const int64_t xb = b * SB + int64_t(j) * S;
#pragma GCC unroll 4
      for (int k = 0; k < S / 4; k += 2) {
        __m512i w0, w1;
        codes2<NIB>(blk, kg0 + k, w0, w1);
        for (int t = 0; t < NT; ++t) {
          s[t] = _mm512_dpbusd_epi32(s[t], w0, _mm512_set1_epi32(load32(xq[t] + xb + 4 * k)));
          s[t] = _mm512_dpbusd_epi32(s[t], w1, _mm512_set1_epi32(load32(xq[t] + xb + 4 * k + 4)));
        }
      }
      if (J > 1) {
        const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + p.off_sc + j * kPackRows)));
        for (int t = 0; t < NT; ++t) {
          const __m512i v = _mm512_mullo_epi32(s[t], sc);
          isum[t] = j ? _mm512_add_epi32(isum[t], v) : v;
        }
      } else {
        for (int t = 0; t < NT; ++t) isum[t] = s[t];
      }
    }
    const float* dp = reinterpret_cast<const float*>(blk + p.off_d);
    const __m512 dv = _mm512_loadu_ps(dp);
    for (int t = 0; t < NT; ++t)
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dv, _mm512_set1_ps(xd[t][b])), acc[t]);
    if constexpr (MIN) {
      const __m512 dmv = _mm512_loadu_ps(dp + kPackRows);
      const uint8_t* mp = blk + p.off_min;
      for (int t = 0; t < NT; ++t) {
        __m512i ms = _mm512_setzero_si512();
        for (int q = 0; q < J / 2; ++q)
          ms = _mm512_dpwssd_epi32(ms, _mm512_load_si512(mp + 64 * q), _mm512_set1_epi32(xp[t][b * (J / 2) + q]));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_mul_ps(dmv, _mm512_set1_ps(-xd[t][b])), acc[t]);
      }
    }
  }
  const __mmask16 m = nvalid >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nvalid) - 1);
  for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * ys + g * kPackRows, m, acc[t]);
}

template <int S, bool MIN, int NIB>
void run_tiles(const PackedWeight& p, const PackedActs& a, int64_t g0, int64_t g1, int64_t t0, int64_t t1,
               float* y, int64_t ys) {
  for (int64_t t = t0; t < t1; t += 8) {
    const int64_t nt = std::min<int64_t>(8, t1 - t);
    for (int64_t g = g0; g < g1; ++g) {
      const int nvalid = int(std::min<int64_t>(kPackRows, p.rows - g * kPackRows));
      switch (nt) {
        case 8: tile<8, S, MIN, NIB>(p, a, g, t, y, ys, nvalid); break;
        case 7: tile<7, S, MIN, NIB>(p, a, g, t, y, ys, nvalid); break;
        case 6: tile<6, S, MIN, NIB>(p, a, g, t, y, ys, nvalid); break;
        case 5: tile<5, S, MIN, NIB>(p, a, g, t, y, ys, nvalid); break;
        case 4: tile<4, S, MIN, NIB>(p, a, g, t, y, ys, nvalid); break;
        case 3: tile<3, S, MIN, NIB>(p, a, g, t, y, ys, nvalid); break;
        case 2: tile<2, S, MIN, NIB>(p, a, g, t, y, ys, nvalid); break;
        default: tile<1, S, MIN, NIB>(p, a, g, t, y, ys, nvalid); break;
      }
    }
  }
}

}  // namespace

void packed_gemm_avx512(const PackedWeight& p, const PackedActs& a, int64_t g0, int64_t g1, int64_t t0,
                        int64_t t1, float* y, int64_t y_stride) {
  if (p.lut && p.S == 32 && !p.has_min) return run_tiles<32, false, 2>(p, a, g0, g1, t0, t1, y, y_stride);  // IQ4
  const int key = (p.S == 32 ? 4 : 0) | (p.has_min ? 2 : 0) | (p.nib && !p.lut ? 1 : 0);
  switch (key) {
    case 7: return run_tiles<32, true, 1>(p, a, g0, g1, t0, t1, y, y_stride);   // Q4_K
    case 6: return run_tiles<32, true, 0>(p, a, g0, g1, t0, t1, y, y_stride);  // Q5_K
    case 5: return run_tiles<32, false, 1>(p, a, g0, g1, t0, t1, y, y_stride);  // Q4_0
    case 4: return run_tiles<32, false, 0>(p, a, g0, g1, t0, t1, y, y_stride);  // Q8_0, Q5_0
    case 3: return run_tiles<16, true, 1>(p, a, g0, g1, t0, t1, y, y_stride);   // Q2_K
    case 1: return run_tiles<16, false, 1>(p, a, g0, g1, t0, t1, y, y_stride);  // Q3_K
    case 0: return run_tiles<16, false, 0>(p, a, g0, g1, t0, t1, y, y_stride);  // Q6_K
    default: return packed_gemm_ref(p, a, g0, g1, t0, t1, y, y_stride);
  }
}

}  // namespace samq::cpu

#pragma GCC pop_options
