// The quant layer's front door: quantize and dequantize rows and whole tensors to every ggml
// storage type samq writes (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K, IQ4_NL,
// IQ4_XS), producing blocks byte-compatible with ggml (blocks.h) and, for the reference
// quantizers, the same search ggml runs (ggml-formats.md §3).
//
// Shapes are (rows, cols) = (out_features, in_features); blocks run along a row (cols must be
// a multiple of the type's block size) and rows are independent, so quantize_tensor splits
// whole rows across threads and gives the same bytes for any thread count.
//
// Weights must be finite (NaN/Inf throw samq::Error naming the row and column; F32 is copied
// as is). Where the CPU has AVX2, the scale searches run eight groups per instruction and the
// dequantizers are vectorized; both give exactly the bytes and floats of the scalar reference
// (quants_ref.h), which stays the oracle in the tests.
//
// `imatrix` is the per-column importance vector (length cols, one positive weight per input
// column, shared by all rows), or nullptr. As in ggml, passing one switches the K-quants and
// legacy types to the importance-weighted search; Q8_0 and F16/BF16/F32 ignore it.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/ggml_type.h"

namespace samq {

// True for the types quantize_row/dequantize_row implement (the list above).
bool quant_supported(GgmlType t);

// One row of n elements (n a multiple of the block size) to/from packed blocks.
// `imatrix` (length n, or nullptr) must cover exactly this row's columns: ggml's weighted
// legacy quantizers use statistics of the whole row, so do not split a row across calls.
// Throws samq::Error for unsupported types or bad n.
void quantize_row(GgmlType t, const float* src, void* dst, int64_t n, const float* imatrix);
void dequantize_row(GgmlType t, const void* src, float* dst, int64_t n);

// Whole (rows, cols) tensors, multithreaded over rows via core/parallel.h; deterministic.
// dst must hold rows * ggml_row_size(t, cols) bytes. Returns the number of bytes written.
size_t quantize_tensor(GgmlType t, const float* src, void* dst, int64_t rows, int64_t cols,
                       const float* imatrix);
void dequantize_tensor(GgmlType t, const void* src, float* dst, int64_t rows, int64_t cols);

// Quantize then dequantize (rows, cols) floats into dst_f32 (may not alias src), without
// materializing the whole quantized tensor: the analysis measures thousands of variants.
void quant_round_trip(GgmlType t, const float* src, float* dst_f32, int64_t rows, int64_t cols,
                      const float* imatrix);

// Error of a round trip, for tests and the analysis: sum over elements of
// w[col] * (deq - src)^2 (w = imatrix, or 1 when null), accumulated in double per row.
double weighted_sq_error(const float* src, const float* deq, int64_t rows, int64_t cols,
                         const float* imatrix);

}  // namespace samq
