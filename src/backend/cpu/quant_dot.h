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

}  // namespace samq::cpu
