// Δloss predictions per candidate type (analyze/predict.h).
#include "analyze/predict.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "quant/quantize.h"

namespace samq {

const char* predict_signal_name(int s) {
  switch (s) {
    case kFisherModelFull: return "fisher_model_full";
    case kFisherEmpFull: return "fisher_emp_full";
    case kFisherModelFact: return "fisher_model_fact";
    case kFisherEmpFact: return "fisher_emp_fact";
    case kImatrixErr: return "imatrix_err";
  }
  return "?";
}

std::vector<GgmlType> candidate_types(int64_t cols) {
  using T = GgmlType;
  if (cols % 256 == 0) return {T::F16, T::Q8_0, T::Q6_K, T::Q5_K, T::Q4_K, T::IQ4_XS, T::Q3_K, T::Q2_K};
  if (cols % 32 == 0) return {T::F16, T::Q8_0, T::Q5_1, T::Q5_0, T::IQ4_NL, T::Q4_1, T::Q4_0};
  return {T::F16};
}

std::vector<CandidatePrediction> predict_tensor(const SensitivityAccumulator& acc, const TensorStats& s,
                                                const float* w, const float* quant_imatrix,
                                                const std::vector<GgmlType>& types) {
  const int64_t rows = s.rows, cols = s.cols;
  const bool full = !s.g2[0].empty();
  const bool fact = s.linear || s.embedding;
  // Stacked experts: every expert's rows quantized with its own importance (n_mat * cols values).
  const int64_t n_mat = s.n_mat, mat_rows = rows / n_mat;
  std::vector<float> imx(static_cast<size_t>(n_mat * cols), 1.0f);
  {
    auto m = acc.imatrix(s);
    if (!m.empty()) imx = m;
  }
  std::vector<float> deq(static_cast<size_t>(rows * cols));
  std::vector<CandidatePrediction> out;
  for (GgmlType t : types) {
    CandidatePrediction cp;
    cp.type = t;
    cp.bytes = rows * ggml_row_size(t, cols);
    for (int64_t e = 0; e < n_mat; ++e)
      quant_round_trip(t, w + e * mat_rows * cols, deq.data() + e * mat_rows * cols, mat_rows, cols,
                       quant_imatrix ? quant_imatrix + e * cols : nullptr);
    // per-row sums in fixed chunks of rows, then reduced in order (thread-count independent)
    const int64_t rchunk = 16, nch = (rows + rchunk - 1) / rchunk;
    std::vector<std::array<double, kNumSignals>> part(static_cast<size_t>(nch));
    parallel_for(nch, 1, [&](int64_t cb, int64_t ce) {
      std::vector<float> f(static_cast<size_t>(cols));
      for (int64_t c = cb; c < ce; ++c) {
        std::array<double, kNumSignals> a{};
        for (int64_t r = c * rchunk; r < std::min(rows, (c + 1) * rchunk); ++r) {
          const float* wr = w + r * cols;
          const float* qr = deq.data() + r * cols;
          auto weighted = [&](const float* F) {
            double x = 0;
            for (int64_t i = 0; i < cols; ++i) {
              const double d = double(wr[i]) - qr[i];
              x += F[i] * d * d;
            }
            return x;
          };
          if (full) {
            acc.fisher_row(s, kModelLabels, false, r, f.data());
            a[kFisherModelFull] += weighted(f.data());
            acc.fisher_row(s, kEmpirical, false, r, f.data());
            a[kFisherEmpFull] += weighted(f.data());
          }
          if (fact) {
            acc.fisher_row(s, kModelLabels, true, r, f.data());
            a[kFisherModelFact] += weighted(f.data());
            acc.fisher_row(s, kEmpirical, true, r, f.data());
            a[kFisherEmpFact] += weighted(f.data());
          }
          a[kImatrixErr] += weighted(imx.data() + (r / mat_rows) * cols);
        }
        part[c] = a;
      }
    });
    for (const auto& a : part)
      for (int k = 0; k < kNumSignals; ++k) cp.dloss[k] += a[k];
    for (int k = 0; k < kImatrixErr; ++k) cp.dloss[k] *= 0.5;
    out.push_back(cp);
  }
  return out;
}

}  // namespace samq
