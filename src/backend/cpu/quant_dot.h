// Fused dot products of quantized weight rows with quantized activation rows, as ggml's
// vec_dot kernels compute them: integer sums per sub-block, scaled once per (sub-)block, no
// f32 weight row. The activation row is first rounded to the weight type's ggml "vec_dot_type"
// (act_quant.h act_type_for: Q8_K for K-quants and IQ4_XS, Q8_0 for Q4_0/Q5_0/Q8_0/IQ4_NL, Q8_1
// for Q4_1/Q5_1, F16/BF16/F32 for the float types). Same value as dequantize(w) ·
// round_activations(x) up to float rounding (integer sums are exact; only the order of the
// float accumulation differs between the scalar reference and the SIMD paths).
//
// Every type has a scalar reference kernel; AVX2 and AVX-512 variants are chosen at run time
// (__builtin_cpu_supports), so the build runs on any x86-64. Tested in
// tests/backend/test_quant_dot.cpp, measured by bench/bench_kernels.cpp.
#pragma once
#include <cstdint>

#include "core/ggml_type.h"
#include "quant/blocks.h"

namespace samq::cpu {

// ---- Row API (what the matmul calls) --------------------------------------------------------

// True when W's type has a fused kernel against its ggml activation type (act_quant.h
// act_type_for): F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS.
bool has_fused_dot(GgmlType wtype);
// Bytes of one quantized activation row of `cols` values for W's activation type.
int64_t act_row_bytes(GgmlType wtype, int64_t cols);
// Quantize n_tok activation rows (f32, stride cols) into the activation type of wtype
// (rows act_row_bytes(wtype, cols) apart in xq).
void quantize_activations(GgmlType wtype, const float* x, int64_t n_tok, int64_t cols, void* xq);
// y[t * y_stride + r] = dot(W row r, activation row t) for r in [r0, r1), t in [0, n_tok).
// w points at row 0; rows are row_bytes apart; xq from quantize_activations (rows act_row_bytes
// apart). Single-threaded (callers split the row range). Throws for types without a kernel.
void dot_rows(GgmlType wtype, const void* w, int64_t row_bytes, int64_t r0, int64_t r1,
              const void* xq, int64_t n_tok, int64_t cols, float* y, int64_t y_stride);

// ---- Instruction-set variants (tests and bench_kernels) -------------------------------------
enum class DotIsa { Ref, Avx2, Avx512 };
const char* dot_isa_name(DotIsa isa);
bool dot_isa_supported(DotIsa isa);  // CPU support
DotIsa dot_isa_best();               // what dot_rows uses
// The variant a type really runs at `isa` (falls back to a lower one where a type has none).
DotIsa dot_isa_effective(GgmlType wtype, DotIsa isa);
// dot_rows with an explicit variant (must be supported by the CPU).
void dot_rows_isa(DotIsa isa, GgmlType wtype, const void* w, int64_t row_bytes, int64_t r0, int64_t r1,
                  const void* xq, int64_t n_tok, int64_t cols, float* y, int64_t y_stride);

// ---- Single-row kernels (kept for existing callers) -----------------------------------------
// n = number of values (multiple of 256).
float dot_q4_K_q8_K(const block_q4_K* w, const block_q8_K* x, int64_t n);
float dot_q6_K_q8_K(const block_q6_K* w, const block_q8_K* x, int64_t n);
// n a multiple of 32; activations from quantize_row_q8_0 (act_quant.h).
float dot_q8_0_q8_0(const block_q8_0* w, const block_q8_0* x, int64_t n);

}  // namespace samq::cpu
