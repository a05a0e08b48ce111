// AVX-512 kernels of quant_dot.h (F, BW, VL, DQ, VNNI). Q4_K, Q5_K and Q6_K have 512-bit
// kernels here for 4+ tokens (64 weights per instruction, up to 8 tokens per pass); the rest
// and decode use the 256-bit kernels of quant_dot_x86.h compiled with AVX-512VL/VNNI (u8·s8 sums of the
// one-scale-per-block types through vpdpbusd, 32 vector registers).
#include <immintrin.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/quant_dot_kernels.h"
#include "core/fp16.h"
#include "quant/blocks.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
#define SAMQ_QDOT_VNNI 1
namespace samq::cpu::qdot::x86_avx512 {
#include "backend/cpu/quant_dot_x86.h"

inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }
inline __m512 cvt512(__m512i v) { return _mm512_cvtepi32_ps(v); }
inline __m512i acc_scaled(__m512i acc, __m512i u, __m512i s, __m512i sc16) {
  return _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(u, s), sc16);
}
// int16 lane i of the result = element idx(i) of v (16 int16 in the low 256 bits).
inline __m512i pick16(__m256i v, __m512i idx) { return _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(v)); }
// Index vector: lanes 0-15 select a, lanes 16-31 select b.
inline __m512i idx2(int a, int b) {
  return _mm512_inserti64x4(_mm512_set1_epi16(int16_t(a)), _mm256_set1_epi16(int16_t(b)), 1);
}
inline __m512i idx4(int a, int b, int c, int d) {
  const __m256i lo = _mm256_set_m128i(_mm_set1_epi16(int16_t(b)), _mm_set1_epi16(int16_t(a)));
  const __m256i hi = _mm256_set_m128i(_mm_set1_epi16(int16_t(d)), _mm_set1_epi16(int16_t(c)));
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
// Per-16-bit-lane shift counts: a in the low 256 bits, b in the high.
inline __m512i shifts2(int a, int b) { return idx2(a, b); }

// Q4_K / Q5_K: 32 bytes of qs = [low nibbles | high nibbles] = 64 consecutive values
// (sub-blocks 2c, 2c+1), matched with one 512-bit activation load.
template <bool Five>
struct Z4K {
  using W = std::conditional_t<Five, block_q5_K, block_q4_K>;
  using X = block_q8_K;
  template <int NT>
  static inline void block(const W& w, const X* const* x, __m512* acc) {
    uint64_t sc8, mn8;
    k4_scales(w.scales, sc8, mn8);
    const __m256i sc = _mm256_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(sc8)));
    const __m128i mn = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(mn8)));
    const __m512i m4 = _mm512_set1_epi8(0x0F), sh = shifts2(0, 4);
    __m512i hb;
    if constexpr (Five) hb = _mm512_broadcast_i64x4(load(w.qh));
    __m512i is[NT];
    for (int t = 0; t < NT; ++t) is[t] = _mm512_setzero_si512();
    for (int c = 0; c < 4; ++c) {
      __m512i q = _mm512_and_si512(_mm512_srlv_epi16(_mm512_broadcast_i64x4(load(w.qs + 32 * c)), sh), m4);
      if constexpr (Five) {
        // bit 2c (low half) / 2c+1 (high half) of qh -> 0x10
        const __m512i hbit = _mm512_and_si512(_mm512_srlv_epi16(hb, shifts2(2 * c, 2 * c + 1)), _mm512_set1_epi8(1));
        q = _mm512_or_si512(q, _mm512_slli_epi16(hbit, 4));
      }
      const __m512i s = pick16(sc, idx2(2 * c, 2 * c + 1));
      for (int t = 0; t < NT; ++t) is[t] = acc_scaled(is[t], q, load512(x[t]->qs + 64 * c), s);
    }
    const float d = h2f(w.d), dm = h2f(w.dmin);
    for (int t = 0; t < NT; ++t) {
      acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(d * x[t]->d), cvt512(is[t]), acc[t]);
      acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(-dm * x[t]->d),
                               cvt512(_mm512_zextsi128_si512(k4_min_term(x[t]->bsums, mn))), acc[t]);
    }
  }
};

// Q6_K: per half h, [ql 0..31 | ql 32..63] with the matching 2-bit fields of qh give values
// 128h + 0..63, the high nibbles give 128h + 64..127.
struct Z6K {
  using W = block_q6_K;
  using X = block_q8_K;
  template <int NT>
  static inline void block(const W& w, const X* const* x, __m512* acc) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(0x03);
    const __m256i sc = _mm256_cvtepi8_epi16(load128(w.scales));
    __m512i is[NT];
    for (int t = 0; t < NT; ++t) is[t] = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h) {
      const __m512i L = load512(w.ql + 64 * h);
      const __m512i H = _mm512_broadcast_i64x4(load(w.qh + 32 * h));
      const __m512i A = _mm512_or_si512(_mm512_and_si512(L, m4),
                                        _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, shifts2(0, 2)), m3), 4));
      const __m512i B = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                        _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, shifts2(4, 6)), m3), 4));
      const __m512i sA = pick16(sc, idx4(8 * h, 8 * h + 1, 8 * h + 2, 8 * h + 3));
      const __m512i sB = pick16(sc, idx4(8 * h + 4, 8 * h + 5, 8 * h + 6, 8 * h + 7));
      for (int t = 0; t < NT; ++t) {
        is[t] = acc_scaled(is[t], A, load512(x[t]->qs + 128 * h), sA);
        is[t] = acc_scaled(is[t], B, load512(x[t]->qs + 128 * h + 64), sB);
      }
    }
    const float d = h2f(w.d);
    for (int t = 0; t < NT; ++t) {
      const __m256i bias = _mm256_madd_epi16(sc, load(x[t]->bsums));  // 8 lanes, times 32 below
      const __m512i b = _mm512_slli_epi32(_mm512_zextsi256_si512(bias), 5);
      acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(d * x[t]->d), cvt512(_mm512_sub_epi32(is[t], b)), acc[t]);
    }
  }
};

template <class K, int NT>
inline void pass512(const typename K::W* w, const uint8_t* x0, int64_t x_bytes, int64_t nb, float* y, int64_t ys) {
  using X = typename K::X;
  __m512 acc[NT];
  const X* xr[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm512_setzero_ps();
    xr[t] = reinterpret_cast<const X*>(x0 + t * x_bytes);
  }
  for (int64_t b = 0; b < nb; ++b) {
    const X* xb[NT];
    for (int t = 0; t < NT; ++t) xb[t] = xr[t] + b;
    K::template block<NT>(w[b], xb, acc);
  }
  for (int t = 0; t < NT; ++t) y[t * ys] = _mm512_reduce_add_ps(acc[t]);
}

template <class K>
struct ZBlocks {
  using W = typename K::W;
  template <int NT>
  static void pass(const W* w, const uint8_t* x0, int64_t xb, int64_t nb, float* y, int64_t ys) {
    pass512<K, NT>(w, x0, xb, nb, y, ys);
  }
};

// Up to 8 tokens per pass (32 registers hold 8 int and 8 float accumulators). Fewer than 4
// tokens (decode) go to the 256-bit kernel R: measured faster there (bench_kernels: 512-bit
// multiplies issue on one port of this Xeon, 256-bit ones on two).
template <class P, class R>
void rows512(const Args& a) {
  using W = typename P::W;
  if (a.n_tok < 4) return rows<R>(a);
  for (int64_t r = 0; r < a.nrows; ++r) {
    const W* w = reinterpret_cast<const W*>(a.w + r * a.row_bytes);
    float* y = a.y + r;
    int64_t t = 0;
    for (; t + 8 <= a.n_tok; t += 8) P::template pass<8>(w, a.x + t * a.x_bytes, a.x_bytes, a.nb, y + t * a.y_stride, a.y_stride);
    for (; t + 4 <= a.n_tok; t += 4) P::template pass<4>(w, a.x + t * a.x_bytes, a.x_bytes, a.nb, y + t * a.y_stride, a.y_stride);
    switch (a.n_tok - t) {
      case 3: P::template pass<3>(w, a.x + t * a.x_bytes, a.x_bytes, a.nb, y + t * a.y_stride, a.y_stride); break;
      case 2: P::template pass<2>(w, a.x + t * a.x_bytes, a.x_bytes, a.nb, y + t * a.y_stride, a.y_stride); break;
      case 1: P::template pass<1>(w, a.x + t * a.x_bytes, a.x_bytes, a.nb, y + t * a.y_stride, a.y_stride); break;
      default: break;
    }
  }
}

inline Kernel kernel_for512(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_K: return rows512<ZBlocks<Z4K<false>>, KQ4K>;
    case GgmlType::Q5_K: return rows512<ZBlocks<Z4K<true>>, KQ5K>;
    case GgmlType::Q6_K: return rows512<ZBlocks<Z6K>, KQ6K>;
    default: return kernel_for(t);
  }
}
}  // namespace samq::cpu::qdot::x86_avx512
#undef SAMQ_QDOT_VNNI
#pragma GCC pop_options

namespace samq::cpu::qdot {
Kernel kernel_avx512(GgmlType t) { return x86_avx512::kernel_for512(t); }
}  // namespace samq::cpu::qdot
