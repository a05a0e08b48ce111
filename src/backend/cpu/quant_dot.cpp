#include "backend/cpu/quant_dot.h"

#include <immintrin.h>

#include "core/fp16.h"

namespace samq::cpu {
namespace {

// 6-bit scale and min of sub-block j of a Q4_K/Q5_K block (ggml-formats.md §2.6).
inline void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// sum_i d*sc_j*q4_i*d8*q8_i - dmin*m_j*d8*q8_i over the block, integer sums per sub-block.
template <int Dummy>
inline float dot_q4_K_body(const block_q4_K* w, const block_q8_K* x, int64_t n) {
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const uint8_t* qs = w[b].qs;
    const int8_t* q8 = x[b].qs;
    int sums[8];
    for (int c = 0; c < 4; ++c) {  // 64 values: low nibbles then high nibbles of 32 bytes
      int lo = 0, hi = 0;
      for (int l = 0; l < 32; ++l) {
        lo += int(qs[32 * c + l] & 0xF) * int(q8[64 * c + l]);
        hi += int(qs[32 * c + l] >> 4) * int(q8[64 * c + 32 + l]);
      }
      sums[2 * c] = lo;
      sums[2 * c + 1] = hi;
    }
    int isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      scale_min_k4(j, w[b].scales, sc, m);
      isum += sc * sums[j];
      msum += m * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
    }
    const float d = fp16_to_f32(w[b].d) * x[b].d, dmin = fp16_to_f32(w[b].dmin) * x[b].d;
    sum += d * float(isum) - dmin * float(msum);
  }
  return sum;
}

// AVX2: per 64-value chunk, nibbles (u8) x q8 (s8) with maddubs into int16 pairs (|.| <= 3840),
// then madd with the sub-block scale into int32 lanes; same integer sums as the plain body.
__attribute__((target("avx2,fma"))) float dot_q4_K_avx2(const block_q4_K* w, const block_q8_K* x, int64_t n) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    int sc[8], mn[8];
    for (int j = 0; j < 8; ++j) scale_min_k4(j, w[b].scales, sc[j], mn[j]);
    __m256i acc = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * c));
      const __m256i lo = _mm256_and_si256(q, m4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      const __m256i ylo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 64 * c));
      const __m256i yhi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 64 * c + 32));
      const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, ylo), _mm256_set1_epi16(int16_t(sc[2 * c])));
      const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yhi), _mm256_set1_epi16(int16_t(sc[2 * c + 1])));
      acc = _mm256_add_epi32(acc, _mm256_add_epi32(plo, phi));
    }
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    const int isum = _mm_cvtsi128_si32(s4);
    int msum = 0;
    for (int j = 0; j < 8; ++j) msum += mn[j] * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
    const float d = fp16_to_f32(w[b].d) * x[b].d, dmin = fp16_to_f32(w[b].dmin) * x[b].d;
    sum += d * float(isum) - dmin * float(msum);
  }
  return sum;
}
float dot_q4_K_avx512(const block_q4_K* w, const block_q8_K* x, int64_t n) { return dot_q4_K_avx2(w, x, n); }
float dot_q4_K_plain(const block_q4_K* w, const block_q8_K* x, int64_t n) { return dot_q4_K_body<2>(w, x, n); }

using DotFn = float (*)(const block_q4_K*, const block_q8_K*, int64_t);
DotFn pick() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) return dot_q4_K_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return dot_q4_K_avx2;
  return dot_q4_K_plain;
}

// Q6_K (ggml-formats.md §2): value e = d * scales[e/16] * (6-bit q - 32); the 6-bit q of
// half h, lane l: low 4 bits from ql (l, l+32; low then high nibble), high 2 bits from qh.
template <int Dummy>
inline float dot_q6_K_body(const block_q6_K* w, const block_q8_K* x, int64_t n) {
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    int8_t q[QK_K];
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = w[b].ql + 64 * h;
      const uint8_t* qh = w[b].qh + 32 * h;
      int8_t* o = q + 128 * h;
      for (int l = 0; l < 32; ++l) {
        o[l] = int8_t(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        o[l + 32] = int8_t(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        o[l + 64] = int8_t(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        o[l + 96] = int8_t(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
    int isum = 0;
    for (int k = 0; k < QK_K / 16; ++k) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += int(q[16 * k + i]) * int(x[b].qs[16 * k + i]);
      isum += int(w[b].scales[k]) * s;
    }
    sum += fp16_to_f32(w[b].d) * x[b].d * float(isum);
  }
  return sum;
}

template <int Dummy>
inline float dot_q8_0_body(const block_q8_0* w, const block_q8_0* x, int64_t n) {
  float sum = 0;
  for (int64_t b = 0; b < n / QK8_0; ++b) {
    int s = 0;
    for (int i = 0; i < QK8_0; ++i) s += int(w[b].qs[i]) * int(x[b].qs[i]);
    sum += fp16_to_f32(w[b].d) * fp16_to_f32(x[b].d) * float(s);
  }
  return sum;
}

#define SAMQ_DOT_VARIANTS(NAME, BODY, WT, XT)                                                          \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"))) float NAME##_avx512(const WT* w, const XT* x, int64_t n) { \
    return BODY<0>(w, x, n);                                                                           \
  }                                                                                                    \
  __attribute__((target("avx2,fma"))) float NAME##_avx2(const WT* w, const XT* x, int64_t n) { return BODY<1>(w, x, n); } \
  float NAME##_plain(const WT* w, const XT* x, int64_t n) { return BODY<2>(w, x, n); }                \
  float (*NAME##_pick())(const WT*, const XT*, int64_t) {                                              \
    __builtin_cpu_init();                                                                              \
    if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) return NAME##_avx512; \
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return NAME##_avx2;           \
    return NAME##_plain;                                                                               \
  }

SAMQ_DOT_VARIANTS(dot_q6_K, dot_q6_K_body, block_q6_K, block_q8_K)
SAMQ_DOT_VARIANTS(dot_q8_0, dot_q8_0_body, block_q8_0, block_q8_0)

}  // namespace

float dot_q6_K_q8_K(const block_q6_K* w, const block_q8_K* x, int64_t n) {
  static const auto f = dot_q6_K_pick();
  return f(w, x, n);
}

float dot_q8_0_q8_0(const block_q8_0* w, const block_q8_0* x, int64_t n) {
  static const auto f = dot_q8_0_pick();
  return f(w, x, n);
}

float dot_q4_K_q8_K(const block_q4_K* w, const block_q8_K* x, int64_t n) {
  static const DotFn f = pick();
  return f(w, x, n);
}

}  // namespace samq::cpu
