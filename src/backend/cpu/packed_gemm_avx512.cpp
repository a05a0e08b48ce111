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

template <int NT, int S, bool MIN>
void tile(const PackedWeight& p, const PackedActs& a, int64_t g, int64_t t0, float* y, int64_t ys, int nvalid) {
  const int J = p.J;
  const int64_t SB = p.SB;
  __m512 acc[NT];
  const int8_t* xq[NT];
  const int32_t* xo[NT];
  const float* xm[NT];
  const float* xd[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm512_setzero_ps();
    xq[t] = a.q.data() + (t0 + t) * a.cols;
    xo[t] = a.xoff.data() + (t0 + t) * a.nsub;
    xm[t] = MIN ? a.xmin.data() + (t0 + t) * a.nsub : nullptr;
    xd[t] = a.d.data() + (t0 + t) * a.nsb;
  }
  for (int64_t b = 0; b < p.nsb; ++b) {
    const uint8_t* blk = p.block(g, b);
    const float* fs = reinterpret_cast<const float*>(blk + SB * kPackRows);
    __m512 sb[NT];
    for (int t = 0; t < NT; ++t) sb[t] = _mm512_setzero_ps();
    for (int j = 0; j < J; ++j) {
      __m512i s[NT];
      for (int t = 0; t < NT; ++t) s[t] = _mm512_set1_epi32(xo[t][b * J + j]);
      const uint8_t* wq = blk + int64_t(j) * S * kPackRows;
      const int64_t xb = b * SB + int64_t(j) * S;
#pragma GCC unroll 8
      for (int k = 0; k < S / 4; ++k) {
        const __m512i w = _mm512_load_si512(wq + 64 * k);
        for (int t = 0; t < NT; ++t)
          s[t] = _mm512_dpbusd_epi32(s[t], w, _mm512_set1_epi32(load32(xq[t] + xb + 4 * k)));
      }
      const __m512 f = _mm512_load_ps(fs + j * kPackRows);
      for (int t = 0; t < NT; ++t) sb[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), f, sb[t]);
      if constexpr (MIN) {
        const __m512 fm = _mm512_load_ps(fs + (J + j) * kPackRows);
        for (int t = 0; t < NT; ++t) acc[t] = _mm512_fmadd_ps(fm, _mm512_set1_ps(xm[t][b * J + j]), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_fmadd_ps(sb[t], _mm512_set1_ps(xd[t][b]), acc[t]);
  }
  const __mmask16 m = nvalid >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nvalid) - 1);
  for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * ys + g * kPackRows, m, acc[t]);
}

template <int S, bool MIN>
void run_tiles(const PackedWeight& p, const PackedActs& a, int64_t g0, int64_t g1, int64_t t0, int64_t t1,
               float* y, int64_t ys) {
  for (int64_t t = t0; t < t1; t += 8) {
    const int64_t nt = std::min<int64_t>(8, t1 - t);
    for (int64_t g = g0; g < g1; ++g) {
      const int nvalid = int(std::min<int64_t>(kPackRows, p.rows - g * kPackRows));
      switch (nt) {
        case 8: tile<8, S, MIN>(p, a, g, t, y, ys, nvalid); break;
        case 7: tile<7, S, MIN>(p, a, g, t, y, ys, nvalid); break;
        case 6: tile<6, S, MIN>(p, a, g, t, y, ys, nvalid); break;
        case 5: tile<5, S, MIN>(p, a, g, t, y, ys, nvalid); break;
        case 4: tile<4, S, MIN>(p, a, g, t, y, ys, nvalid); break;
        case 3: tile<3, S, MIN>(p, a, g, t, y, ys, nvalid); break;
        case 2: tile<2, S, MIN>(p, a, g, t, y, ys, nvalid); break;
        default: tile<1, S, MIN>(p, a, g, t, y, ys, nvalid); break;
      }
    }
  }
}

}  // namespace

void packed_gemm_avx512(const PackedWeight& p, const PackedActs& a, int64_t g0, int64_t g1, int64_t t0,
                        int64_t t1, float* y, int64_t y_stride) {
  if (p.S == 32) {
    if (p.has_min)
      run_tiles<32, true>(p, a, g0, g1, t0, t1, y, y_stride);
    else
      run_tiles<32, false>(p, a, g0, g1, t0, t1, y, y_stride);
  } else {
    if (p.has_min)
      run_tiles<16, true>(p, a, g0, g1, t0, t1, y, y_stride);
    else
      run_tiles<16, false>(p, a, g0, g1, t0, t1, y, y_stride);
  }
}

}  // namespace samq::cpu

#pragma GCC pop_options
