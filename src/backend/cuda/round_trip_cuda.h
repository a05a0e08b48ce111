// The analysis' quantizer round trips on an NVIDIA GPU: every candidate type's weighted squared
// error of a tensor, sum over elements of F * (w - rt(w))^2 for five weightings F at once (the
// Fisher forms of analyze/predict.h and the importance matrix).
//
// The round trip rt is the CPU's own quantizer: the block quantizers and dequantizers are one
// source for both (quant/kquants_impl.h, quant/legacy_iq4_impl.h, core/hd.h), compiled here
// without FMA contraction, so every block's bytes and every dequantized float equal the CPU's
// (tests/cuda checks this bit for bit). The per-element weights are formed with the CPU's
// expressions (double products rounded to float), and the sums run in double; only their
// summation order differs from the CPU's (a relative difference of order 1e-15).
//
// One GPU thread quantizes one block; the work runs on its own stream, so it can overlap the
// analysis' forward and backward passes on the same GPU. Device memory per call: the tensor as
// f32 and each full Fisher given (4 bytes per element each), plus O(rows + cols).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "core/ggml_type.h"

namespace samq {

constexpr int kRoundTripSums = 5;

struct RoundTripErrorInputs {
  int64_t rows = 0, cols = 0;
  int64_t mat_rows = 0;                  // rows of one stacked matrix (experts); rows when dense
  const float* w = nullptr;              // host (rows, cols), finite
  const float* quant_imatrix = nullptr;  // host, (rows / mat_rows) * cols, or null: plain quantizers
  const float* imx = nullptr;            // host, (rows / mat_rows) * cols: weights of sum 4
  // Sums 0 and 1, full Fisher: F(r, i) = float(full[k][r * cols + i] * full_norm); null: sum 0.
  const float* full[2] = {nullptr, nullptr};
  double full_norm = 0;
  // Sums 2 and 3, factored Fisher: F(r, i) = float(row_coef[k][r] * col[k][(r / col_rows) * cols + i]);
  // null: sum 0.
  const double* row_coef[2] = {nullptr, nullptr};
  const double* col[2] = {nullptr, nullptr};
  int64_t col_rows = 0;
};

// True for the types round_trip_errors_cuda implements: F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
// Q2_K..Q6_K, IQ4_NL, IQ4_XS.
bool round_trip_cuda_supported(GgmlType t);

// Per type (in order), the five sums (not halved). Throws samq::Error for an unsupported type, a
// shape the type cannot take, a missing device and any failing CUDA call (named).
std::vector<std::array<double, kRoundTripSums>> round_trip_errors_cuda(const std::vector<GgmlType>& types,
                                                                        const RoundTripErrorInputs& in, int device);

// The quantize-dequantize of (rows, cols) on the GPU (tests: equal to quant_round_trip's floats).
void quant_round_trip_cuda(GgmlType t, const float* src, float* dst, int64_t rows, int64_t cols,
                           const float* imatrix, int device);

}  // namespace samq
