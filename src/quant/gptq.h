// Hessian-aware (GPTQ / OBQ-style) quantization into standard ggml blocks.
//
// Minimizes ||(W - Q) X^T||^2 = tr((W - Q) H (W - Q)^T), H = X^T X (the input Hessian of one
// linear layer, (cols, cols), shared by all rows), instead of ggml's per-element weighted error.
// The output is the ordinary block layout of the type (llama.cpp loads it): only the chosen
// integer levels and, through the re-run quantizer, the scales differ from ggml's choice.
//
// Algorithm (Frantar et al. 2022), per row (rows are independent; threads split rows):
//  - damp: H += lambda*I with lambda = damp * mean(diag H) (damp = 0.01 by default); columns with
//    diag(H) == 0 (never-active inputs) get diag 1 before damping.
//  - U = upper Cholesky factor of H^-1 (H^-1 = U^T U), computed in double as J inv(chol(J H J)) J
//    (J = index reversal), i.e. one Cholesky and one triangular inverse.
//  - columns are walked left to right in lazy batches of B columns (B = 256, or 128 for 32-element
//    block types; a multiple of the block size). When a block starts (every block_size columns)
//    the type's own quantizer (quant/quantize.h, importance = diag(H) of those columns) runs on the
//    current, error-updated weights of that block; its scales/mins/d are kept, which fixes a grid
//    of representable values for each element (gptq_grid.h). Then each column is rounded to the
//    nearest grid value, and its error e = (w - q) / U[j][j] is propagated:
//    W[:, k] -= e * U[j][k] for the later columns k (within the batch at once, beyond the batch
//    in one update per batch). The chosen levels are packed back into the block.
//  - refit: NOT IMPLEMENTED yet (GptqOptions::refit is ignored). The idea: after a block's levels
//    are fixed, re-fit its scales by least squares and keep them when that lowers the error.
//
// The same algorithm runs with its linear algebra on a GPU in backend/cuda/gptq_cuda.h (it calls
// gptq_lazy_batch below for the in-batch step, so both produce the same blocks).
//
// Supported types: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_0, IQ4_XS, IQ4_NL, Q4_0, Q4_1, Q5_0, Q5_1.
//
// Memory: W (rows x cols f32), U (cols^2 double->f32) and per-thread batch buffers. For a 70B
// model the largest H is 28672^2 f32 = 3.3 GB (ffn_down); a streaming quantizer would load one
// layer's Hessians at a time (they are separate GGUF tensors, memory-mapped), and H could be
// stored as F16 (its entries are averages of products of normalized activations).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/ggml_type.h"

namespace samq {

struct GptqOptions {
  double damp = 0.01;  // lambda = damp * mean(diag H)
  bool refit = false;  // reserved: least-squares refit of block scales (not implemented, ignored)
};

bool gptq_supported(GgmlType t);

// Upper-triangular U (n x n, row-major, zeros below the diagonal) with (H + lambda I)^-1 = U^T U.
// H is (n x n) row-major and symmetric (only the upper triangle is read... both halves are
// averaged). Throws samq::Error if the damped H is not positive definite.
std::vector<double> gptq_inverse_cholesky_upper(const float* H, int64_t n, double damp);

// Quantizes W (rows x cols, row-major) to `t` into dst (rows * ggml_row_size(t, cols) bytes)
// using the Hessian H (cols x cols). Multithreaded over rows, deterministic for any thread count.
// Returns bytes written.
size_t gptq_quantize_tensor(GgmlType t, const float* W, void* dst, int64_t rows, int64_t cols, const float* H,
                            const GptqOptions& opt = {});

// Same with a precomputed U (gptq_inverse_cholesky_upper) and importance (diag of the damped
// or plain H, length cols) for the block quantizer.
size_t gptq_quantize_tensor_u(GgmlType t, const float* W, void* dst, int64_t rows, int64_t cols,
                              const std::vector<double>& U, const std::vector<float>& importance,
                              const GptqOptions& opt = {});

// Pieces shared with the CUDA path (backend/cuda/gptq_cuda.h), which must produce the same output.
//
// Throws samq::Error for an unsupported type or a column count that is not a multiple of the
// type's block size (the checks gptq_quantize_tensor makes).
void gptq_check_shapes(GgmlType t, int64_t rows, int64_t cols);
// lambda = damp * mean of the diagonal of H, non-positive diagonals counted as 1 (as damped).
double gptq_damping_lambda(const float* H, int64_t n, double damp);
// The block quantizer's importance: the damped diagonal (length n), as float.
std::vector<float> gptq_importance(const float* H, int64_t n, double damp);
// Columns per lazy batch: 256, or 128 for 32-element block types.
int64_t gptq_batch_columns(GgmlType t);
// One lazy batch [i1, i2) (i1 a multiple of gptq_batch_columns(t), i2 = min(n, i1 + B)) for R
// rows: w + r * ldw holds columns [i1, i2) of row r, error-updated by every earlier batch; it is
// updated in place through the batch. Writes the blocks of columns [i1, i2) of row r to
// out + r * row_bytes (out: the first row's packed bytes) and the propagated errors
// e_j = (w_j - q_j) / U[j][j] to err[r * lde + (j - i1)]. Ub: the batch's diagonal block of
// the float copy of U, Ub[(j - i1) * ldu + (k - i1)] = U[j][k] for j, k in [i1, i2);
// importance: gptq_importance (all n columns). The caller then applies
// W[:, i2:] -= E * U[i1:i2, i2:] (in float, as w -= e * u one batch column after the other).
void gptq_lazy_batch(GgmlType t, float* w, int64_t ldw, float* err, int64_t lde, int64_t R, int64_t i1, int64_t i2,
                     const float* Ub, int64_t ldu, const float* importance, uint8_t* out, size_t row_bytes);

// tr((W - Q) H (W - Q)^T) in double: the proxy loss GPTQ minimizes (tests, reports).
double hessian_weighted_error(const float* W, const float* Q, int64_t rows, int64_t cols, const float* H);

}  // namespace samq
