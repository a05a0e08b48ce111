// Predicted loss increase per (tensor, candidate type): 0.5 * sum F * (w - q(w))^2 with q the
// real quantizer of that type (quant/quantize.h, importance-weighted as `samq quantize` will
// run it), and the exact bytes of the tensor in that type.
//
// Every signal the analysis can rank by is computed from the same round trip, so they can be
// compared on equal terms (tests/analyze, the closing report of issue 6):
//   fisher_model_full, fisher_emp_full     exact Fisher diagonal (model / text labels)
//   fisher_model_fact, fisher_emp_fact     factored Fisher (row x column)
//   imatrix_err                            sum imatrix[col] * (w - q)^2 (weighted error alone)
// The gradient-norm baseline has no per-type value (it is a tensor property).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "analyze/fisher.h"
#include "core/ggml_type.h"

namespace samq {

enum PredictSignal : int {
  kFisherModelFull = 0,
  kFisherEmpFull,
  kFisherModelFact,
  kFisherEmpFact,
  kImatrixErr,
  kNumSignals
};
const char* predict_signal_name(int s);  // "fisher_model_full", ...

// The candidate types of a tensor with `cols` columns: F16, Q8_0, Q6_K, Q5_K, Q4_K, IQ4_XS,
// Q3_K, Q2_K when cols % 256 == 0; F16, Q8_0, Q5_1, Q5_0, IQ4_NL, Q4_1, Q4_0 otherwise (when
// cols % 32 == 0); F16 only else.
std::vector<GgmlType> candidate_types(int64_t cols);

struct CandidatePrediction {
  GgmlType type;
  int64_t bytes = 0;                          // rows * ggml_row_size(type, cols)
  std::array<double, kNumSignals> dloss{};    // per signal (nats, per token)
};

// w: the tensor's f32 values (rows, cols); quant_imatrix: per-column importance used by the
// quantizer (nullptr: plain quantization, as for token_embd / output without imatrix data); for
// stacked experts (s.n_mat > 1) n_mat * cols values, expert e's rows quantized with slice e.
// full: whether the exact Fisher is available (else the *_full signals are 0).
// cuda_device >= 0: the round trips and sums run on that GPU (backend/cuda/round_trip_cuda.h: the
// same quantizer bytes; the sums differ from the CPU's only in their order); -1: on the CPU.
std::vector<CandidatePrediction> predict_tensor(const SensitivityAccumulator& acc, const TensorStats& s,
                                                const float* w, const float* quant_imatrix,
                                                const std::vector<GgmlType>& types, int cuda_device = -1);

}  // namespace samq
