// Activation rounding as ggml's CPU matmul does it: before a dot product with a weight row,
// ggml converts the f32 activation row to the weight type's "vec_dot_type" (ggml-cpu type
// traits): Q8_K for the K-quants and IQ4_XS, Q8_0 for Q4_0/Q5_0/Q8_0/IQ4_NL, Q8_1 for
// Q4_1/Q5_1, BF16 for BF16, F16 for F16, nothing for F32. samq's matmul op is defined with the
// same rounding so that its logits track llama.cpp's (the greedy fixture, KLD figures measured
// by llama-perplexity), and the integer dot kernels (quant_dot.h) consume the same blocks.
#pragma once
#include <cstdint>

#include "core/ggml_type.h"
#include "quant/blocks.h"

namespace samq::cpu {

enum class ActType { F32, F16, BF16, Q8_0, Q8_1, Q8_K };

// ggml's block_q8_1 (activation-only): Q8_0 plus s = d * sum(qs), both fp16. 36 bytes.
struct block_q8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[QK8_0];
};
static_assert(sizeof(block_q8_1) == 36, "block_q8_1 must be 36 bytes");
ActType act_type_for(GgmlType weight_type);

// ggml quantize_row_q8_K_ref: per 256 values, d = -max/127 (max = the value of largest
// magnitude), q = min(127, RNE(x * -127/max)), bsums over 16s.
void quantize_row_q8_K(const float* x, block_q8_K* y, int64_t n);
// ggml's x86 quantize_row_q8_0: d = amax/127 stored as fp16, q = RNE(x / d) (with the f32 d).
void quantize_row_q8_0(const float* x, block_q8_0* y, int64_t n);
// Q8_0's d and qs, s = fp16(d * sum(qs)) with the f32 d.
void quantize_row_q8_1(const float* x, block_q8_1* y, int64_t n);
// The functions above use an AVX2 path where the CPU has one (bit-identical, tested in
// tests/backend/test_quant_dot.cpp); these are the scalar versions it is tested against.
void quantize_row_q8_K_ref(const float* x, block_q8_K* y, int64_t n);
void quantize_row_q8_0_ref(const float* x, block_q8_0* y, int64_t n);
void quantize_row_q8_1_ref(const float* x, block_q8_1* y, int64_t n);

// x (n values, n a multiple of the block) replaced by what the dot product sees: the
// dequantized act-type values.
void round_activations(ActType t, const float* x, float* out, int64_t n);

}  // namespace samq::cpu
