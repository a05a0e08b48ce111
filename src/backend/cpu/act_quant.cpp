#include "backend/cpu/act_quant.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"

namespace samq::cpu {

ActType act_type_for(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return ActType::F32;
    case GgmlType::F16: return ActType::F16;
    case GgmlType::BF16: return ActType::BF16;
    case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: case GgmlType::IQ4_NL:
      return ActType::Q8_0;
    case GgmlType::Q4_1: case GgmlType::Q5_1: return ActType::Q8_1;
    default: return ActType::Q8_K;
  }
}

namespace {
// ggml's nearest_int: round to nearest, ties to even (|v| < 2^22).
inline int nearest_int(float v) {
  float val = v + 12582912.f;
  int i;
  std::memcpy(&i, &val, sizeof(int));
  return (i & 0x007fffff) - 0x00400000;
}
}  // namespace

void quantize_row_q8_K_ref(const float* x, block_q8_K* y, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    float max = 0, amax = 0;
    for (int j = 0; j < QK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (!amax) {
      y[b].d = 0;
      std::memset(y[b].qs, 0, QK_K);
      std::memset(y[b].bsums, 0, sizeof(y[b].bsums));
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < QK_K; ++j) {
      const int v = nearest_int(iscale * x[j]);
      y[b].qs[j] = int8_t(v < 127 ? v : 127);
    }
    for (int j = 0; j < QK_K / 16; ++j) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += y[b].qs[j * 16 + i];
      y[b].bsums[j] = int16_t(s);
    }
    y[b].d = 1 / iscale;
  }
}

void quantize_row_q8_0_ref(const float* x, block_q8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0) {
    float amax = 0;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    for (int j = 0; j < QK8_0; ++j) y[b].qs[j] = int8_t(std::nearbyint(x[j] * id));
  }
}

void quantize_row_q8_1_ref(const float* x, block_q8_1* y, int64_t n) {
  for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0) {
    float amax = 0;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < QK8_0; ++j) {
      y[b].qs[j] = int8_t(std::nearbyint(x[j] * id));
      sum += y[b].qs[j];
    }
    y[b].d = f32_to_fp16(d);
    y[b].s = f32_to_fp16(d * float(sum));
  }
}

namespace {

// ---- AVX2 versions: same operations per value in the same float precision (products x*iscale,
// x*id rounded once, cvtps rounds to nearest even like nearest_int/nearbyint), so the blocks
// are bit-identical to the scalar ones.
#define SAMQ_AVX2 __attribute__((target("avx2,fma,f16c")))

SAMQ_AVX2 inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// 32 int32 lanes (4 vectors) -> 32 int8 in order (values within [-128, 127]).
SAMQ_AVX2 inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  const __m256i p = _mm256_packs_epi16(ab, cd);  // lane-interleaved: a0 b0 c0 d0 | a1 b1 c1 d1 (4-value groups)
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

SAMQ_AVX2 void q8_K_avx2(const float* x, block_q8_K* y, int64_t n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < QK_K; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
    const float amax = hmax8(m);
    if (!(amax > 0)) {  // all zero (or NaN, which the scalar loop also never picks): as the reference
      quantize_row_q8_K_ref(x, y + b, QK_K);
      continue;
    }
    float max = 0;  // first value of magnitude amax, as the scalar strict '>' scan picks it
    const __m256 am = _mm256_set1_ps(amax);
    for (int j = 0; j < QK_K; j += 8) {
      const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)), am, _CMP_EQ_OQ));
      if (hit) {
        max = x[j + __builtin_ctz(unsigned(hit))];
        break;
      }
    }
    const float iscale = -127.f / max;
    const __m256 is = _mm256_set1_ps(iscale);
    const __m256i lim = _mm256_set1_epi32(127);
    for (int j = 0; j < QK_K; j += 32) {
      __m256i v[4];
      for (int k = 0; k < 4; ++k)
        v[k] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(x + j + 8 * k))), lim);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs + j), pack32(v[0], v[1], v[2], v[3]));
      // bsums of values j..j+15 (v0, v1) and j+16..j+31 (v2, v3).
      __m256i h = _mm256_hadd_epi32(_mm256_add_epi32(v[0], v[1]), _mm256_add_epi32(v[2], v[3]));
      h = _mm256_hadd_epi32(h, h);
      const __m128i t = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
      y[b].bsums[j / 16] = int16_t(_mm_cvtsi128_si32(t));
      y[b].bsums[j / 16 + 1] = int16_t(_mm_extract_epi32(t, 1));
    }
    y[b].d = 1 / iscale;
  }
}

// One Q8_0/Q8_1 block: d, and the 32 codes (returns their sum).
SAMQ_AVX2 inline int q8_32_avx2(const float* x, uint16_t* dh, int8_t* qs, float* dout) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 a0 = _mm256_loadu_ps(x), a1 = _mm256_loadu_ps(x + 8), a2 = _mm256_loadu_ps(x + 16),
               a3 = _mm256_loadu_ps(x + 24);
  const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, a0), _mm256_andnot_ps(sign, a1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, a2), _mm256_andnot_ps(sign, a3)));
  const float amax = hmax8(m);
  const float d = amax / 127.f;
  const float id = d ? 1.0f / d : 0.0f;
  *dh = f32_to_fp16(d);
  *dout = d;
  const __m256 v = _mm256_set1_ps(id);
  const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(a0, v)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(a1, v)),
                i2 = _mm256_cvtps_epi32(_mm256_mul_ps(a2, v)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(a3, v));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), pack32(i0, i1, i2, i3));
  __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  h = _mm_add_epi32(h, _mm_unpackhi_epi64(h, h));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
  return _mm_cvtsi128_si32(h);
}

SAMQ_AVX2 void q8_0_avx2(const float* x, block_q8_0* y, int64_t n) {
  float d;
  for (int64_t b = 0; b < n / QK8_0; ++b) q8_32_avx2(x + QK8_0 * b, &y[b].d, y[b].qs, &d);
}

SAMQ_AVX2 void q8_1_avx2(const float* x, block_q8_1* y, int64_t n) {
  float d;
  for (int64_t b = 0; b < n / QK8_0; ++b) {
    const int sum = q8_32_avx2(x + QK8_0 * b, &y[b].d, y[b].qs, &d);
    y[b].s = f32_to_fp16(d * float(sum));
  }
}

bool use_avx2() {
  static const bool v = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  }();
  return v;
}

}  // namespace

void quantize_row_q8_K(const float* x, block_q8_K* y, int64_t n) {
  if (use_avx2()) q8_K_avx2(x, y, n);
  else quantize_row_q8_K_ref(x, y, n);
}
void quantize_row_q8_0(const float* x, block_q8_0* y, int64_t n) {
  if (use_avx2()) q8_0_avx2(x, y, n);
  else quantize_row_q8_0_ref(x, y, n);
}
void quantize_row_q8_1(const float* x, block_q8_1* y, int64_t n) {
  if (use_avx2()) q8_1_avx2(x, y, n);
  else quantize_row_q8_1_ref(x, y, n);
}

void round_activations(ActType t, const float* x, float* out, int64_t n) {
  switch (t) {
    case ActType::F32:
      if (out != x) std::memcpy(out, x, sizeof(float) * n);
      return;
    case ActType::F16:
      for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_f32(f32_to_fp16(x[i]));
      return;
    case ActType::BF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(f32_to_bf16(x[i]));
      return;
    case ActType::Q8_0:
    case ActType::Q8_1: {
      if (n % QK8_0) fail("activation row of {} values is not a multiple of 32", n);
      block_q8_0 b;
      for (int64_t i = 0; i < n; i += QK8_0) {
        quantize_row_q8_0(x + i, &b, QK8_0);
        const float d = fp16_to_f32(b.d);
        for (int j = 0; j < QK8_0; ++j) out[i + j] = d * float(b.qs[j]);
      }
      return;
    }
    case ActType::Q8_K: {
      if (n % QK_K) fail("activation row of {} values is not a multiple of 256", n);
      block_q8_K b;
      for (int64_t i = 0; i < n; i += QK_K) {
        quantize_row_q8_K(x + i, &b, QK_K);
        for (int j = 0; j < QK_K; ++j) out[i + j] = b.d * float(b.qs[j]);
      }
      return;
    }
  }
}

}  // namespace samq::cpu
