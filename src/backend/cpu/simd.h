// Private to backend/cpu: f32 vector kernels with AVX-512 / AVX2 versions chosen at run time
// (target attributes + __builtin_cpu_supports), so the baseline build stays portable.
#pragma once
#include <cstdint>

namespace samq::cpu {

// sum_i a[i] * b[i] (float accumulation in 16/8 lanes, then a tree sum).
float dot_f32(const float* a, const float* b, int64_t n);
// y[t * y_stride + r] = dot_f32(x + t * x_stride, w + r * w_stride, cols) for r < n_rows,
// t < n_tok, bit-identical to those dot_f32 calls; the AVX-512 path register-blocks 2 rows x 4
// tokens so each loaded vector serves several products (batched decode over float weights).
void dot_tile_f32(const float* w, int64_t w_stride, int64_t n_rows, const float* x, int64_t x_stride,
                  int64_t n_tok, int64_t cols, float* y, int64_t y_stride);
// dot_tile_f32 over bf16 weight rows (strides in elements), widened in registers: each output
// equals dot_f32(x + t * x_stride, widened row r) bit for bit; no widened copy is written.
void dot_tile_f32_bf16w(const uint16_t* w, int64_t w_stride, int64_t n_rows, const float* x, int64_t x_stride,
                        int64_t n_tok, int64_t cols, float* y, int64_t y_stride);
// Exact widening of a row of bf16 / IEEE half values to f32.
void bf16_to_f32_row(const uint16_t* x, float* y, int64_t n);
void f16_to_f32_row(const uint16_t* x, float* y, int64_t n);
// y[i] += a * x[i]
void axpy_f32(float a, const float* x, float* y, int64_t n);
// y[i] = (x[i] * s) * w[i] (w null: x[i] * s); same rounding as the scalar expression. y may alias x.
void scale_mul(const float* x, float s, const float* w, float* y, int64_t n);
// y[i] = a[i] + b[i]; y may alias a or b.
void add_f32(const float* a, const float* b, float* y, int64_t n);
// x[i] = exp(x[i] - m) in place; returns the sum of the new x[i]. The AVX-512 exp is a
// degree-6 polynomial after range reduction (max relative error ~2 ulp against std::exp,
// tested), with correct underflow to 0 and overflow to inf.
float exp_sub_sum(float* x, int64_t n, float m);
// max of x[0..n) (n >= 1)
float max_f32(const float* x, int64_t n);
// y[i] = silu(g[i]) * u[i] = g / (1 + exp(-g)) * u; y may alias g or u.
void silu_mul(const float* g, const float* u, float* y, int64_t n);
// Which path dot_f32 takes on this machine: "avx512", "avx2" or "scalar".
const char* simd_level();
// For tests: force a level ("avx512", "avx2", "scalar"); returns false if unsupported here.
bool force_simd_level(const char* level);

}  // namespace samq::cpu
