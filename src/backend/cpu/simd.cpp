#include "backend/cpu/simd.h"

#include "core/fp16.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <immintrin.h>
#include <vector>

// GCC 12 reports _mm512_reduce_add_ps's internal _mm512_undefined_pd as uninitialized once
// the reduction is inlined (GCC bug 105593); the warning is spurious.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace samq::cpu {
namespace {

float dot_scalar(const float* a, const float* b, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
void axpy_scalar(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void scale_mul_scalar(const float* x, float s, const float* w, float* y, int64_t n) {
  if (w)
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s * w[i];
  else
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
}
void add_scalar(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

float exp_sub_sum_scalar(float* x, int64_t n, float m) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += (x[i] = std::exp(x[i] - m));
  return s;
}
float max_scalar(const float* x, int64_t n) {
  float m = x[0];
  for (int64_t i = 1; i < n; ++i) m = std::max(m, x[i]);
  return m;
}
void silu_mul_scalar(const float* g, const float* u, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

__attribute__((target("avx2,fma"))) void scale_mul_avx2(const float* x, float s, const float* w, float* y, int64_t n) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  if (w)
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), _mm256_loadu_ps(w + i)));
  else
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
  scale_mul_scalar(x + i, s, w ? w + i : nullptr, y + i, n - i);
}
__attribute__((target("avx2,fma"))) void add_avx2(const float* a, const float* b, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  add_scalar(a + i, b + i, y + i, n - i);
}

__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  s0 = _mm256_add_ps(s0, s1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float s = _mm_cvtss_f32(h);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}
__attribute__((target("avx2,fma"))) void axpy_avx2(float a, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

__attribute__((target("avx512f"))) float dot_avx512(const float* a, const float* b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i + 16 <= n; i += 16)
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
// Weight loads for the tile kernels: f32 rows as they are, bf16 rows widened in registers
// (exact), so a bf16 row streams from memory straight into the FMAs.
__attribute__((target("avx512f"))) inline __m512 ld16(const float* p) { return _mm512_loadu_ps(p); }
__attribute__((target("avx512f"))) inline __m512 ld16(const uint16_t* p) {
  const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
// First k (< 16) values, the rest zero.
__attribute__((target("avx512f"))) inline __m512 ld16_tail(const float* p, int64_t k) {
  return _mm512_maskz_loadu_ps(__mmask16((1u << k) - 1), p);
}
__attribute__((target("avx512f"))) inline __m512 ld16_tail(const uint16_t* p, int64_t k) {
  alignas(32) uint16_t tmp[16] = {};
  std::memcpy(tmp, p, size_t(k) * sizeof(uint16_t));
  return ld16(tmp);
}

// out[t] = _mm512_reduce_add_ps(v[t]) for t < 8, bit for bit, with the 8 reductions interleaved
// (18 shuffles and 7 adds instead of ~8 x 9 dependent ops). GCC's reduction adds the upper and
// lower 256-bit halves, then the 128-bit halves of that, then elements (0,2) and (1,3), then
// those two; the same pairs are added here, across vectors. (Float addition is commutative, so
// only the pairing matters.)
__attribute__((target("avx512f"))) inline void reduce_add8(const __m512* v, float* out) {
  __m512 h[4];  // h[k] quarters: 256->128 halves of v[2k], v[2k+1]
  for (int k = 0; k < 4; ++k)
    h[k] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  __m512 q[2];  // q[k] quarter j: the 128-bit sum of v[4k + j]
  for (int k = 0; k < 2; ++k)
    q[k] = _mm512_add_ps(_mm512_shuffle_f32x4(h[2 * k], h[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(h[2 * k], h[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  // quarter j: [e0+e2, e1+e3] of v[j], then of v[4 + j]
  const __m512 s = _mm512_add_ps(_mm512_shuffle_ps(q[0], q[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(q[0], q[1], _MM_SHUFFLE(3, 2, 3, 2)));
  // quarter j: [sum v[j], sum v[4 + j], (repeated)]
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(s, s, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(s, s, _MM_SHUFFLE(3, 1, 3, 1)));
  alignas(64) float tmp[16];
  _mm512_store_ps(tmp, r);
  for (int j = 0; j < 4; ++j) {
    out[j] = tmp[4 * j];
    out[4 + j] = tmp[4 * j + 1];
  }
}

// dot_avx512's arithmetic for NR weight rows and NT tokens at once: per (row, token) the same
// two accumulators, the same tail handling and the same final reduction (x is the first operand
// of each product there too), so every output equals dot_avx512(x, widen(w)) bit for bit.
// y[r][t] for r < NR, t < NT.
template <class W, int NR, int NT>
__attribute__((target("avx512f"))) void dot_tile_rxn_avx512(const W* const* ws, const float* const* xs, int64_t n,
                                                            float (*y)[4 * 2]) {
  __m512 a[NR][NT][2];
  for (auto& r : a)
    for (auto& t : r) t[0] = t[1] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 w0[NR], w1[NR];
    for (int r = 0; r < NR; ++r) w0[r] = ld16(ws[r] + i), w1[r] = ld16(ws[r] + i + 16);
    for (int t = 0; t < NT; ++t) {
      const __m512 x0 = _mm512_loadu_ps(xs[t] + i), x1 = _mm512_loadu_ps(xs[t] + i + 16);
      for (int r = 0; r < NR; ++r) {
        a[r][t][0] = _mm512_fmadd_ps(x0, w0[r], a[r][t][0]);
        a[r][t][1] = _mm512_fmadd_ps(x1, w1[r], a[r][t][1]);
      }
    }
  }
  for (; i + 16 <= n; i += 16) {
    __m512 w0[NR];
    for (int r = 0; r < NR; ++r) w0[r] = ld16(ws[r] + i);
    for (int t = 0; t < NT; ++t) {
      const __m512 x0 = _mm512_loadu_ps(xs[t] + i);
      for (int r = 0; r < NR; ++r) a[r][t][0] = _mm512_fmadd_ps(x0, w0[r], a[r][t][0]);
    }
  }
  if (i < n) {
    __m512 w0[NR];
    for (int r = 0; r < NR; ++r) w0[r] = ld16_tail(ws[r] + i, n - i);
    for (int t = 0; t < NT; ++t) {
      const __m512 x0 = ld16_tail(xs[t] + i, n - i);
      for (int r = 0; r < NR; ++r) a[r][t][1] = _mm512_fmadd_ps(x0, w0[r], a[r][t][1]);
    }
  }
  if constexpr (NR * NT == 8) {
    __m512 v[8];
    float o[8];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) v[r * NT + t] = _mm512_add_ps(a[r][t][0], a[r][t][1]);
    reduce_add8(v, o);
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) y[r][t] = o[r * NT + t];
  } else {
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) y[r][t] = _mm512_reduce_add_ps(_mm512_add_ps(a[r][t][0], a[r][t][1]));
  }
}

// Register tiles over rows x tokens: 1 row x 8 tokens while 8 tokens remain (each widened
// weight vector feeds 8 products), then 2 rows x 4, then 2 rows x 1. An odd last row is paired
// with itself (each output has its own accumulators, so the repeat changes nothing) and only
// real outputs are stored.
template <class W>
__attribute__((target("avx512f"))) void dot_tile_avx512(const W* w, int64_t ws, int64_t n_rows, const float* x,
                                                        int64_t xs, int64_t n_tok, int64_t cols, float* y,
                                                        int64_t ys) {
  float yt[2][8];
  int64_t t = 0;
  for (; t + 8 <= n_tok; t += 8) {
    const float* xp[8];
    for (int k = 0; k < 8; ++k) xp[k] = x + (t + k) * xs;
    for (int64_t r = 0; r < n_rows; ++r) {
      const W* wp[1] = {w + r * ws};
      dot_tile_rxn_avx512<W, 1, 8>(wp, xp, cols, yt);
      for (int k = 0; k < 8; ++k) y[(t + k) * ys + r] = yt[0][k];
    }
  }
  for (int64_t r = 0; r < n_rows; r += 2) {
    const int64_t nr = std::min<int64_t>(2, n_rows - r);
    const W* wp[2] = {w + r * ws, w + (r + nr - 1) * ws};
    int64_t u = t;
    for (; u + 4 <= n_tok; u += 4) {
      const float* xp[4] = {x + u * xs, x + (u + 1) * xs, x + (u + 2) * xs, x + (u + 3) * xs};
      dot_tile_rxn_avx512<W, 2, 4>(wp, xp, cols, yt);
      for (int k = 0; k < 4; ++k)
        for (int64_t q = 0; q < nr; ++q) y[(u + k) * ys + r + q] = yt[q][k];
    }
    for (; u < n_tok; ++u) {
      const float* xp[1] = {x + u * xs};
      dot_tile_rxn_avx512<W, 2, 1>(wp, xp, cols, yt);
      for (int64_t q = 0; q < nr; ++q) y[u * ys + r + q] = yt[q][0];
    }
  }
}

__attribute__((target("avx512f"))) void bf16_row_avx512(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
    _mm512_storeu_ps(y + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
  }
  for (; i < n; ++i) y[i] = bf16_to_f32(x[i]);
}
__attribute__((target("avx512f"))) void f16_row_avx512(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i))));
  for (; i < n; ++i) y[i] = fp16_to_f32(x[i]);
}

__attribute__((target("avx512f"))) void axpy_avx512(float a, const float* x, float* y, int64_t n) {
  const __m512 va = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m,
                          _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

__attribute__((target("avx512f"))) void scale_mul_avx512(const float* x, float s, const float* w, float* y,
                                                         int64_t n) {
  const __m512 vs = _mm512_set1_ps(s);
  int64_t i = 0;
  if (w)
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vs), _mm512_loadu_ps(w + i)));
  else
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), vs));
  scale_mul_scalar(x + i, s, w ? w + i : nullptr, y + i, n - i);
}
__attribute__((target("avx512f"))) void add_avx512(const float* a, const float* b, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
  add_scalar(a + i, b + i, y + i, n - i);
}

// exp(x) for 16 floats: x = n ln2 + r, |r| <= ln2/2 (Cody-Waite, two-part ln2), e^r by the
// Cephes expf polynomial, times 2^n by scalef (exact, underflows to 0, overflows to inf).
__attribute__((target("avx512f"))) inline __m512 exp512(__m512 x) {
  // min/max return their second operand when one is NaN: NaN passes through.
  x = _mm512_max_ps(_mm512_set1_ps(-110.0f), _mm512_min_ps(_mm512_set1_ps(100.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

__attribute__((target("avx512f"))) float exp_sub_sum_avx512(float* x, int64_t n, float m) {
  const __m512 vm = _mm512_set1_ps(m);
  __m512 s = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
    _mm512_storeu_ps(x + i, e);
    s = _mm512_add_ps(s, e);
  }
  if (i < n) {
    const __mmask16 k = __mmask16((1u << (n - i)) - 1);
    const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm));
    _mm512_mask_storeu_ps(x + i, k, e);
    s = _mm512_add_ps(s, _mm512_maskz_mov_ps(k, e));
  }
  return _mm512_reduce_add_ps(s);
}
__attribute__((target("avx512f"))) float max_avx512(const float* x, int64_t n) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
  if (i < n) m = _mm512_mask_max_ps(m, __mmask16((1u << (n - i)) - 1), m, _mm512_maskz_loadu_ps(__mmask16((1u << (n - i)) - 1), x + i));
  return _mm512_reduce_max_ps(m);
}
__attribute__((target("avx512f"))) void silu_mul_avx512(const float* g, const float* u, float* y, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 vg = _mm512_loadu_ps(g + i);
    const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), vg));
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_div_ps(vg, _mm512_add_ps(one, e)), _mm512_loadu_ps(u + i)));
  }
  silu_mul_scalar(g + i, u + i, y + i, n - i);
}

struct Table {
  float (*dot)(const float*, const float*, int64_t);
  void (*axpy)(float, const float*, float*, int64_t);
  void (*scale_mul)(const float*, float, const float*, float*, int64_t);
  void (*add)(const float*, const float*, float*, int64_t);
  float (*exp_sub_sum)(float*, int64_t, float);
  float (*max)(const float*, int64_t);
  void (*silu_mul)(const float*, const float*, float*, int64_t);
  const char* name;
};

constexpr Table kScalar{dot_scalar,         axpy_scalar, scale_mul_scalar, add_scalar, exp_sub_sum_scalar,
                        max_scalar,         silu_mul_scalar, "scalar"};
constexpr Table kAvx2{dot_avx2,           axpy_avx2,  scale_mul_avx2,  add_avx2, exp_sub_sum_scalar,
                      max_scalar,         silu_mul_scalar, "avx2"};
constexpr Table kAvx512{dot_avx512,         axpy_avx512, scale_mul_avx512, add_avx512, exp_sub_sum_avx512,
                        max_avx512,         silu_mul_avx512, "avx512"};

Table detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return kAvx2;
  return kScalar;
}

Table& table() {
  static Table t = detect();
  return t;
}

}  // namespace

float dot_f32(const float* a, const float* b, int64_t n) { return table().dot(a, b, n); }
void dot_tile_f32(const float* w, int64_t w_stride, int64_t n_rows, const float* x, int64_t x_stride, int64_t n_tok,
                  int64_t cols, float* y, int64_t y_stride) {
  const Table& tb = table();
  if (tb.dot == dot_avx512) return dot_tile_avx512(w, w_stride, n_rows, x, x_stride, n_tok, cols, y, y_stride);
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t t = 0; t < n_tok; ++t) y[t * y_stride + r] = tb.dot(x + t * x_stride, w + r * w_stride, cols);
}
void axpy_f32(float a, const float* x, float* y, int64_t n) { table().axpy(a, x, y, n); }
void scale_mul(const float* x, float s, const float* w, float* y, int64_t n) { table().scale_mul(x, s, w, y, n); }
void add_f32(const float* a, const float* b, float* y, int64_t n) { table().add(a, b, y, n); }
float exp_sub_sum(float* x, int64_t n, float m) { return table().exp_sub_sum(x, n, m); }
float max_f32(const float* x, int64_t n) { return table().max(x, n); }
void silu_mul(const float* g, const float* u, float* y, int64_t n) { table().silu_mul(g, u, y, n); }
const char* simd_level() { return table().name; }

void dot_tile_f32_bf16w(const uint16_t* w, int64_t w_stride, int64_t n_rows, const float* x, int64_t x_stride,
                        int64_t n_tok, int64_t cols, float* y, int64_t y_stride) {
  const Table& tb = table();
  if (tb.dot == dot_avx512) return dot_tile_avx512(w, w_stride, n_rows, x, x_stride, n_tok, cols, y, y_stride);
  thread_local std::vector<float> row;
  if (int64_t(row.size()) < cols) row.resize(size_t(cols));
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int64_t i = 0; i < cols; ++i) row[size_t(i)] = bf16_to_f32(w[r * w_stride + i]);
    for (int64_t t = 0; t < n_tok; ++t) y[t * y_stride + r] = tb.dot(x + t * x_stride, row.data(), cols);
  }
}

void bf16_to_f32_row(const uint16_t* x, float* y, int64_t n) {
  if (table().dot == dot_avx512) return bf16_row_avx512(x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(x[i]);
}
void f16_to_f32_row(const uint16_t* x, float* y, int64_t n) {
  if (table().dot == dot_avx512) return f16_row_avx512(x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_f32(x[i]);
}

bool force_simd_level(const char* level) {
  __builtin_cpu_init();
  if (!std::strcmp(level, "avx512")) {
    if (!__builtin_cpu_supports("avx512f")) return false;
    table() = kAvx512;
  } else if (!std::strcmp(level, "avx2")) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return false;
    table() = kAvx2;
  } else if (!std::strcmp(level, "scalar")) {
    table() = kScalar;
  } else {
    return false;
  }
  return true;
}

}  // namespace samq::cpu
