// Fused dot products of a quantized weight row with Q8_K-quantized activations, as ggml's
// vec_dot kernels compute them (integer sums per sub-block, scaled once): the decode path
// skips dequantizing the weight row to f32. Same value as dequantize(w) · dequantize(x) up to
// float rounding; tested against the reference matmul in tests/backend/test_ops.cpp.
#pragma once
#include <cstdint>

#include "quant/blocks.h"

namespace samq::cpu {

// n = number of values (multiple of 256).
float dot_q4_K_q8_K(const block_q4_K* w, const block_q8_K* x, int64_t n);
float dot_q6_K_q8_K(const block_q6_K* w, const block_q8_K* x, int64_t n);
// n a multiple of 32; activations from quantize_row_q8_0 (act_quant.h).
float dot_q8_0_q8_0(const block_q8_0* w, const block_q8_0* x, int64_t n);

}  // namespace samq::cpu
