// Scalar reference quantizers and dequantizers, one set per ggml block format, named as in ggml
// so they can be cross-checked against ggml-quants.c (ggml-formats.md §2-3).
//
// - quantize_row_<t>_ref(x, y, k): ggml's plain path (no importance weights); k elements, any
//   number of whole blocks (rows may be concatenated: the plain paths never look across blocks).
// - quantize_row_<t>_weighted(x, y, n_per_row, qw): ggml's importance-weighted `_impl` path for
//   ONE row of n_per_row elements; qw (length n_per_row) is required. Legacy types use
//   statistics of the whole row, so a row must not be split.
// - IQ4_NL/IQ4_XS have a single routine with optional weights (ggml's llama-quantize path,
//   ntry = 7); Q8_0 has no weighted path (ggml ignores the weights).
// - dequantize_row_<t>(blocks, y, k): k elements.
#pragma once
#include <cstdint>

#include "core/ggml_type.h"
#include "quant/blocks.h"
#include "quant/kquants_impl.h"

namespace samq {

void quantize_row_q4_0_ref(const float* x, block_q4_0* y, int64_t k);
void quantize_row_q4_1_ref(const float* x, block_q4_1* y, int64_t k);
void quantize_row_q5_0_ref(const float* x, block_q5_0* y, int64_t k);
void quantize_row_q5_1_ref(const float* x, block_q5_1* y, int64_t k);
void quantize_row_q8_0_ref(const float* x, block_q8_0* y, int64_t k);
void quantize_row_q4_0_weighted(const float* x, block_q4_0* y, int64_t n_per_row, const float* qw);
void quantize_row_q4_1_weighted(const float* x, block_q4_1* y, int64_t n_per_row, const float* qw);
void quantize_row_q5_0_weighted(const float* x, block_q5_0* y, int64_t n_per_row, const float* qw);
void quantize_row_q5_1_weighted(const float* x, block_q5_1* y, int64_t n_per_row, const float* qw);

void dequantize_row_q4_0(const block_q4_0* x, float* y, int64_t k);
void dequantize_row_q4_1(const block_q4_1* x, float* y, int64_t k);
void dequantize_row_q5_0(const block_q5_0* x, float* y, int64_t k);
void dequantize_row_q5_1(const block_q5_1* x, float* y, int64_t k);
void dequantize_row_q8_0(const block_q8_0* x, float* y, int64_t k);

void quantize_row_q2_K_ref(const float* x, block_q2_K* y, int64_t k);
void quantize_row_q3_K_ref(const float* x, block_q3_K* y, int64_t k);
void quantize_row_q4_K_ref(const float* x, block_q4_K* y, int64_t k);
void quantize_row_q5_K_ref(const float* x, block_q5_K* y, int64_t k);
void quantize_row_q6_K_ref(const float* x, block_q6_K* y, int64_t k);
void quantize_row_q2_K_weighted(const float* x, block_q2_K* y, int64_t n_per_row, const float* qw);
void quantize_row_q3_K_weighted(const float* x, block_q3_K* y, int64_t n_per_row, const float* qw);
void quantize_row_q4_K_weighted(const float* x, block_q4_K* y, int64_t n_per_row, const float* qw);
void quantize_row_q5_K_weighted(const float* x, block_q5_K* y, int64_t n_per_row, const float* qw);
void quantize_row_q6_K_weighted(const float* x, block_q6_K* y, int64_t n_per_row, const float* qw);

void dequantize_row_q2_K(const block_q2_K* x, float* y, int64_t k);
void dequantize_row_q3_K(const block_q3_K* x, float* y, int64_t k);
void dequantize_row_q4_K(const block_q4_K* x, float* y, int64_t k);
void dequantize_row_q5_K(const block_q5_K* x, float* y, int64_t k);
void dequantize_row_q6_K(const block_q6_K* x, float* y, int64_t k);

// qw may be null (weights x^2). Per block of 32 (NL) or super-block of 256 (XS).
void quantize_row_iq4_nl_ref(const float* x, block_iq4_nl* y, int64_t k, const float* qw);
void quantize_row_iq4_xs_ref(const float* x, block_iq4_xs* y, int64_t k, const float* qw);
void dequantize_row_iq4_nl(const block_iq4_nl* x, float* y, int64_t k);
void dequantize_row_iq4_xs(const block_iq4_xs* x, float* y, int64_t k);

// get_scale_min_k4 / sub_block_pair (Q4_K/Q5_K 6-bit scales, ggml-formats.md §2.6): one source
// with the GPU (quant/kquants_impl.h).
using quant_detail::get_scale_min_k4;
using quant_detail::sub_block_pair;

}  // namespace samq

namespace samq {
// The scalar dequantizer of any supported type (dequantize_row may use a SIMD path instead;
// both give identical floats).
void dequantize_row_ref(GgmlType t, const void* src, float* y, int64_t n);
}  // namespace samq
