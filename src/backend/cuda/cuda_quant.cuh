// Weight dequantization and activation rounding on the device, for every storage type of
// quant/quantize.h. Both are bit-identical to the CPU: dequantize_rows gives exactly
// dequantize_weight_row's floats (the same per-element formulas as quant/*.cpp, without FMA
// contraction), round_activations exactly cpu::round_activations' (backend/cpu/act_quant.h).
#pragma once
#include <cstdint>

#include "backend/cpu/act_quant.h"
#include "backend/cuda/cuda_common.cuh"
#include "core/ggml_type.h"

namespace samq::cuda {

// True for the types dequantize_rows implements (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// Q2_K..Q6_K, IQ4_NL, IQ4_XS).
bool dequant_supported(GgmlType t);

// out(nrows, cols) f32 = rows src_i of the weight at w (device bytes, row_bytes apart), with
// src_i = ids[i] (device int32, already validated) when ids is not null, else r0 + i.
void dequantize_rows(Device& d, GgmlType t, const void* w, int64_t row_bytes, int64_t cols, const int32_t* ids,
                     int64_t r0, int64_t nrows, float* out);

// x (n, cols) replaced by what ggml's CPU dot product sees for activation type `at`
// (Q8_0/Q8_1/Q8_K quantize-dequantize, BF16/F16 round trips, F32 copy); out may alias x.
void round_activations(Device& d, cpu::ActType at, const float* x, int64_t n, int64_t cols, float* out);

// n floats to 16-bit, round to nearest even: bf16 exactly as core/fp16.h f32_to_bf16, f16 as
// f32_to_fp16.
void to_bf16(Device& d, const float* x, int64_t n, uint16_t* out);
void to_f16(Device& d, const float* x, int64_t n, uint16_t* out);
// x = hi + lo + O(2^-18 |x|): hi = bf16(x), lo = bf16(x - hi).
void split_bf16(Device& d, const float* x, int64_t n, uint16_t* hi, uint16_t* lo);
// out (n, 3 cols), per row of x (n, cols) three bf16 blocks: order 0 [hi | hi | lo], order 1
// [hi | lo | hi]. A GEMM over K = 3 cols of an order-0 A and an order-1 B is hi.hi + hi.lo + lo.hi:
// the f32 product up to O(2^-17) relative per term.
void split3_bf16_rows(Device& d, const float* x, int64_t n, int64_t cols, int order, uint16_t* out);
// Rows r0 .. r0+nrows-1 of the weight, dequantized (dequantize_rows' floats) straight into the
// order-1 form of split3_bf16_rows: out (nrows, 3 cols).
void dequantize_rows_split3(Device& d, GgmlType t, const void* w, int64_t row_bytes, int64_t cols, int64_t r0,
                            int64_t nrows, uint16_t* out);
// x = f32(f16(x)) in place.
void round_f16(Device& d, float* x, int64_t n);

}  // namespace samq::cuda
