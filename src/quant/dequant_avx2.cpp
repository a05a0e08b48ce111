// AVX2 dequantizers for every block type (K-quants, legacy 32-blocks, IQ4_NL/XS) and F16C for
// fp16. They unpack codes with integer SIMD and then form exactly the float products of the
// scalar reference in the same order: per sub-block scalars D = d*sc (and M = dmin*m) are
// computed as the reference does, codes convert exactly to float, and y = D*q (- M) uses
// separate multiply and subtract (no FMA), so the results are bit-identical. Compiled with
// target attributes and chosen at run time, so the baseline build stays portable.
#include <immintrin.h>

#include <algorithm>
#include <atomic>

#include <cstring>

#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/dequant_fast.h"
#include "quant/quants_ref.h"

namespace samq {
namespace {

std::atomic<bool> g_simd_wanted{true};

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

#define SAMQ_AVX2 __attribute__((target("avx2")))

// y[0..16) = D * q (- M) for 16 signed bytes q.
SAMQ_AVX2 inline void emit16(float* y, __m128i q, __m256 D, __m256 M) {
  const __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
  const __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
  _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(D, f0), M));
  _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(D, f1), M));
}
SAMQ_AVX2 inline void emit16(float* y, __m128i q, __m256 D) {
  const __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
  const __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
  _mm256_storeu_ps(y, _mm256_mul_ps(D, f0));
  _mm256_storeu_ps(y + 8, _mm256_mul_ps(D, f1));
}
// 32 codes with one (D, M).
SAMQ_AVX2 inline void emit32(float* y, __m256i q, float D, float M) {
  const __m256 vd = _mm256_set1_ps(D), vm = _mm256_set1_ps(M);
  emit16(y, _mm256_castsi256_si128(q), vd, vm);
  emit16(y + 16, _mm256_extracti128_si256(q, 1), vd, vm);
}

// The four 2-bit planes of 32 bytes: out[g] = (v >> 2g) & 3 (immediate shifts only).
SAMQ_AVX2 inline void crumb_planes(__m256i v, __m256i out[4]) {
  const __m256i m2 = _mm256_set1_epi8(3);
  out[0] = _mm256_and_si256(v, m2);
  out[1] = _mm256_and_si256(_mm256_srli_epi16(v, 2), m2);
  out[2] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m2);
  out[3] = _mm256_and_si256(_mm256_srli_epi16(v, 6), m2);
}

// Per byte: 16 where bit b of v is set, else 0.
SAMQ_AVX2 inline __m256i bit_to_16(__m256i v, int b) {
  const __m256i mask = _mm256_set1_epi8(char(1 << b));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, mask), mask), _mm256_set1_epi8(16));
}

SAMQ_AVX2 void deq_q4_K(const block_q4_K* x, float* y, int64_t nb) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_f32(x[i].d), min = fp16_to_f32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int c = 0; c < 4; ++c, q += 32, y += 64) {
      float d1, m1, d2, m2;
      sub_block_pair(x[i].scales, c, d, min, &d1, &m1, &d2, &m2);
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
      emit32(y, _mm256_and_si256(v, m4), d1, m1);
      emit32(y + 32, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), d2, m2);
    }
  }
}

SAMQ_AVX2 void deq_q5_K(const block_q5_K* x, float* y, int64_t nb) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_f32(x[i].d), min = fp16_to_f32(x[i].dmin);
    const uint8_t* ql = x[i].qs;
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qh));
    for (int c = 0; c < 4; ++c, ql += 32, y += 64) {
      float d1, m1, d2, m2;
      sub_block_pair(x[i].scales, c, d, min, &d1, &m1, &d2, &m2);
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i h1 = bit_to_16(qh, 2 * c), h2 = bit_to_16(qh, 2 * c + 1);
      emit32(y, _mm256_or_si256(_mm256_and_si256(v, m4), h1), d1, m1);
      emit32(y + 32, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), h2), d2, m2);
    }
  }
}

SAMQ_AVX2 void deq_q6_K(const block_q6_K* x, float* y, int64_t nb) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), b32 = _mm256_set1_epi8(32);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].ql + 64 * h));
      const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].ql + 64 * h + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qh + 32 * h));
      const __m256i lows[4] = {_mm256_and_si256(ql0, m4), _mm256_and_si256(ql1, m4),
                               _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4)};
      __m256i hi[4];
      crumb_planes(qh, hi);
      for (int g = 0; g < 4; ++g, y += 32) {
        const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lows[g], _mm256_slli_epi16(hi[g], 4)), b32);
        const int s = 8 * h + 2 * g;
        emit16(y, _mm256_castsi256_si128(q), _mm256_set1_ps(d * x[i].scales[s]));
        emit16(y + 16, _mm256_extracti128_si256(q, 1), _mm256_set1_ps(d * x[i].scales[s + 1]));
      }
    }
  }
}

// Q2_K and Q3_K share the 2-bit plane: element 128h + 32g + l is bits 2g..2g+1 of qs[32h + l].
// Scales first, then one 16-element group per sub-block. (A formulation with the scale
// arithmetic inside a doubly nested h/g loop was miscompiled by gcc 12 at -O3: the stores
// were dropped. The golden and random-block tests guard this.)
SAMQ_AVX2 void deq_q2_K(const block_q2_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK_K) {
    const float d = fp16_to_f32(x[i].d), dmin = fp16_to_f32(x[i].dmin);
    float D[16], M[16];
    for (int j = 0; j < 16; ++j) {
      D[j] = d * (x[i].scales[j] & 0xF);
      M[j] = dmin * (x[i].scales[j] >> 4);
    }
    __m256i q[8];
    crumb_planes(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs)), q);
    crumb_planes(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 32)), q + 4);
    for (int j = 0; j < 16; ++j) {
      const __m128i q16 = (j & 1) ? _mm256_extracti128_si256(q[j / 2], 1) : _mm256_castsi256_si128(q[j / 2]);
      emit16(y + 16 * j, q16, _mm256_set1_ps(D[j]), _mm256_set1_ps(M[j]));
    }
  }
}

SAMQ_AVX2 void deq_q3_K(const block_q3_K* x, float* y, int64_t nb) {
  const __m256i zero = _mm256_setzero_si256(), four = _mm256_set1_epi8(4);
  for (int64_t i = 0; i < nb; ++i) {
    const float d_all = fp16_to_f32(x[i].d);
    int sc[16];
    for (int j = 0; j < 16; ++j) {
      const int lo = j < 8 ? x[i].scales[j] & 0xF : x[i].scales[j - 8] >> 4;
      sc[j] = (lo | (((x[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
    }
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].hmask));
    // hmask bit b of byte l belongs to element 32b + l; a clear bit subtracts 4.
    __m256i sub4[8];
    for (int b = 0; b < 8; ++b) sub4[b] = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, _mm256_set1_epi8(char(1 << b))), zero), four);
    for (int h = 0; h < 2; ++h) {
      __m256i low[4];
      crumb_planes(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 32 * h)), low);
      for (int g = 0; g < 4; ++g, y += 32) {
        const __m256i q = _mm256_sub_epi8(low[g], sub4[4 * h + g]);
        const int s = 8 * h + 2 * g;
        emit16(y, _mm256_castsi256_si128(q), _mm256_set1_ps(d_all * float(sc[s])));
        emit16(y + 16, _mm256_extracti128_si256(q, 1), _mm256_set1_ps(d_all * float(sc[s + 1])));
      }
    }
  }
}

SAMQ_AVX2 void deq_q8_0(const block_q8_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const __m256 d = _mm256_set1_ps(fp16_to_f32(x[i].d));
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs));
    emit16(y, _mm256_castsi256_si128(q), d);
    emit16(y + 16, _mm256_extracti128_si256(q, 1), d);
  }
}

SAMQ_AVX2 void deq_q4_0(const block_q4_0* x, float* y, int64_t nb) {
  const __m128i m4 = _mm_set1_epi8(0x0F), b8 = _mm_set1_epi8(8);
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const __m256 d = _mm256_set1_ps(fp16_to_f32(x[i].d));
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].qs));
    emit16(y, _mm_sub_epi8(_mm_and_si128(v, m4), b8), d);
    emit16(y + 16, _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), m4), b8), d);
  }
}

// y[0..16) = q * D + M (the legacy affine types' order: int times d, then + m).
SAMQ_AVX2 inline void emit16_add(float* y, __m128i q, __m256 D, __m256 M) {
  const __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
  const __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
  _mm256_storeu_ps(y, _mm256_add_ps(_mm256_mul_ps(D, f0), M));
  _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_mul_ps(D, f1), M));
}

// Codes of a legacy 32-block as 32 bytes in element order: low nibbles of qs[0..15] are
// elements 0..15, high nibbles elements 16..31.
SAMQ_AVX2 inline __m256i legacy_nibbles(const uint8_t* qs) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
}

// 16 in byte e where bit e of the little-endian uint32 qh is set (Q5_0/Q5_1 fifth bits).
SAMQ_AVX2 inline __m256i legacy_high_bits(const uint8_t* qh_bytes) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(int(qh)),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(16));
}

SAMQ_AVX2 void deq_q4_1(const block_q4_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const __m256 d = _mm256_set1_ps(fp16_to_f32(x[i].d)), m = _mm256_set1_ps(fp16_to_f32(x[i].m));
    const __m256i q = legacy_nibbles(x[i].qs);
    emit16_add(y, _mm256_castsi256_si128(q), d, m);
    emit16_add(y + 16, _mm256_extracti128_si256(q, 1), d, m);
  }
}

SAMQ_AVX2 void deq_q5_0(const block_q5_0* x, float* y, int64_t nb) {
  const __m256i b16 = _mm256_set1_epi8(16);
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const __m256 d = _mm256_set1_ps(fp16_to_f32(x[i].d));
    const __m256i q = _mm256_sub_epi8(_mm256_or_si256(legacy_nibbles(x[i].qs), legacy_high_bits(x[i].qh)), b16);
    emit16(y, _mm256_castsi256_si128(q), d);
    emit16(y + 16, _mm256_extracti128_si256(q, 1), d);
  }
}

SAMQ_AVX2 void deq_q5_1(const block_q5_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) {
    const __m256 d = _mm256_set1_ps(fp16_to_f32(x[i].d)), m = _mm256_set1_ps(fp16_to_f32(x[i].m));
    const __m256i q = _mm256_or_si256(legacy_nibbles(x[i].qs), legacy_high_bits(x[i].qh));
    emit16_add(y, _mm256_castsi256_si128(q), d, m);
    emit16_add(y + 16, _mm256_extracti128_si256(q, 1), d, m);
  }
}

// IQ4: codebook lookup with a byte shuffle, then D * value.
SAMQ_AVX2 inline void iq4_emit32(float* y, const uint8_t* qs, __m256 D) {
  const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kvalues_iq4nl));
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  emit16(y, _mm_shuffle_epi8(table, _mm_and_si128(v, m4)), D);
  emit16(y + 16, _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(v, 4), m4)), D);
}

SAMQ_AVX2 void deq_iq4_nl(const block_iq4_nl* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += 32) iq4_emit32(y, x[i].qs, _mm256_set1_ps(fp16_to_f32(x[i].d)));
}

SAMQ_AVX2 void deq_iq4_xs(const block_iq4_xs* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int ib = 0; ib < 8; ++ib, y += 32) {
      const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((x[i].scales_h >> 2 * ib) & 3) << 4);
      iq4_emit32(y, x[i].qs + 16 * ib, _mm256_set1_ps(d * float(ls - 32)));
    }
  }
}

// fp16 <-> f32 with F16C. Exact (RNE, subnormals, overflow to Inf) for every finite input;
// fp16 NaNs (whose payload handling differs from the scalar widening) take the scalar path.
__attribute__((target("avx2,f16c"))) void f16_to_f32_f16c(const uint16_t* h, float* y, int64_t n) {
  int64_t i = 0;
  const __m128i exp_mask = _mm_set1_epi16(0x7c00), man_mask = _mm_set1_epi16(0x03ff);
  for (; i + 8 <= n; i += 8) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i));
    const __m128i is_nan = _mm_andnot_si128(_mm_cmpeq_epi16(_mm_and_si128(v, man_mask), _mm_setzero_si128()),
                                            _mm_cmpeq_epi16(_mm_and_si128(v, exp_mask), exp_mask));
    if (_mm_movemask_epi8(is_nan)) {
      for (int j = 0; j < 8; ++j) y[i + j] = fp16_to_f32(h[i + j]);
    } else {
      _mm256_storeu_ps(y + i, _mm256_cvtph_ps(v));
    }
  }
  for (; i < n; ++i) y[i] = fp16_to_f32(h[i]);
}

__attribute__((target("avx2,f16c"))) void f32_to_f16_f16c(const float* x, uint16_t* h, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {  // NaN: scalar rule
      for (int j = 0; j < 8; ++j) h[i + j] = f32_to_fp16(x[i + j]);
    } else {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(h + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
  }
  for (; i < n; ++i) h[i] = f32_to_fp16(x[i]);
}

// Q8_0 quantization: d = amax/127 as the scalar code, codes roundf(x * id) with roundf's
// ties-away-from-zero emulated exactly (t = trunc(v); v - t is exact; step away when |v - t|
// >= 0.5).
SAMQ_AVX2 void quant_q8_0(const float* x, block_q8_0* y, int64_t nb) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 sign_mask = _mm256_set1_ps(-0.f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.f);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t i = 0; i < nb; ++i, x += 32) {
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(x + 8 * k);
      amax = _mm256_max_ps(amax, _mm256_and_ps(v[k], abs_mask));
    }
    alignas(32) float m8[8];
    _mm256_store_ps(m8, amax);
    float am = 0.0f;
    for (float m : m8) am = std::max(am, m);
    const float d = am / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = f32_to_fp16(d);
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) {
      const __m256 s = _mm256_mul_ps(v[k], vid);
      const __m256 t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __m256 away = _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(s, t), abs_mask), half, _CMP_GE_OQ);
      const __m256 step = _mm256_and_ps(away, _mm256_or_ps(one, _mm256_and_ps(s, sign_mask)));
      q[k] = _mm256_cvttps_epi32(_mm256_add_ps(t, step));
    }
    const __m256i q16 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), _mm256_permutevar8x32_epi32(q16, perm));
  }
}

bool cpu_has_f16c() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  return has;
}

template <typename B>
const B* blocks(const void* p) { return static_cast<const B*>(p); }

}  // namespace

bool quantize_row_f16_fast(const float* x, uint16_t* y, int64_t n) {
  if (!g_simd_wanted || !cpu_has_f16c()) return false;
  f32_to_f16_f16c(x, y, n);
  return true;
}

bool quantize_row_q8_0_fast(const float* x, block_q8_0* y, int64_t n) {
  if (!g_simd_wanted || !cpu_has_avx2() || n % 32 != 0) return false;
  quant_q8_0(x, y, n / 32);
  return true;
}

bool dequant_simd_enabled() { return g_simd_wanted && cpu_has_avx2(); }
void set_dequant_simd(bool on) { g_simd_wanted = on; }

bool dequantize_row_fast(GgmlType t, const void* src, float* y, int64_t n) {
  if (!dequant_simd_enabled() || n <= 0) return false;
  // Block sizes inline (this runs once per weight row in the matmul path); a length that is
  // not a whole number of blocks falls back to the reference, which reports the error.
  const bool legacy = t == GgmlType::Q8_0 || t == GgmlType::Q4_0 || t == GgmlType::Q4_1 ||
                      t == GgmlType::Q5_0 || t == GgmlType::Q5_1 || t == GgmlType::IQ4_NL;
  const int64_t bs = legacy ? 32 : 256;
  if (n % bs != 0) return false;
  const int64_t nb = n / bs;
  if (t == GgmlType::F16) {
    if (!cpu_has_f16c()) return false;
    f16_to_f32_f16c(static_cast<const uint16_t*>(src), y, n);
    return true;
  }
  switch (t) {
    case GgmlType::Q4_K: deq_q4_K(blocks<block_q4_K>(src), y, nb); return true;
    case GgmlType::Q5_K: deq_q5_K(blocks<block_q5_K>(src), y, nb); return true;
    case GgmlType::Q6_K: deq_q6_K(blocks<block_q6_K>(src), y, nb); return true;
    case GgmlType::Q2_K: deq_q2_K(blocks<block_q2_K>(src), y, nb); return true;
    case GgmlType::Q3_K: deq_q3_K(blocks<block_q3_K>(src), y, nb); return true;
    case GgmlType::Q8_0: deq_q8_0(blocks<block_q8_0>(src), y, nb); return true;
    case GgmlType::Q4_0: deq_q4_0(blocks<block_q4_0>(src), y, nb); return true;
    case GgmlType::Q4_1: deq_q4_1(blocks<block_q4_1>(src), y, nb); return true;
    case GgmlType::Q5_0: deq_q5_0(blocks<block_q5_0>(src), y, nb); return true;
    case GgmlType::Q5_1: deq_q5_1(blocks<block_q5_1>(src), y, nb); return true;
    case GgmlType::IQ4_NL: deq_iq4_nl(blocks<block_iq4_nl>(src), y, nb); return true;
    case GgmlType::IQ4_XS: deq_iq4_xs(blocks<block_iq4_xs>(src), y, nb); return true;
    default: return false;
  }
}

}  // namespace samq
