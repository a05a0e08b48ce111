// Δloss predictions per candidate type (analyze/predict.h).
#include "analyze/predict.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "quant/quantize.h"
#if defined(SAMQ_HAVE_CUDA)
#include "backend/cuda/round_trip_cuda.h"
#endif

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

#if defined(SAMQ_HAVE_CUDA)
namespace {

bool all_finite(const float* w, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(w[i])) return false;
  return true;
}

// The GPU's version of the loop below: the per-row and per-column factors of the factored Fisher
// as fisher_row forms them (its double products), the full rows as they are.
std::vector<CandidatePrediction> predict_tensor_cuda(const SensitivityAccumulator& acc, const TensorStats& s,
                                                     const float* w, const float* quant_imatrix,
                                                     const std::vector<float>& imx,
                                                     const std::vector<GgmlType>& types, int device) {
  const int64_t rows = s.rows, cols = s.cols;
  const bool full = !s.g2[0].empty();
  const bool fact = s.linear || s.embedding;
  const double norm = acc.n_loss_tokens() > 0 ? 1.0 / double(acc.n_loss_tokens()) : 0.0;
  const double rows_seen = double(std::max<int64_t>(1, s.n_rows_seen));
  // signal order: model full, empirical full, model factored, empirical factored
  const int labels[2] = {kModelLabels, kEmpirical};
  RoundTripErrorInputs in;
  in.rows = rows;
  in.cols = cols;
  in.mat_rows = s.mat_rows();
  in.w = w;
  in.quant_imatrix = quant_imatrix;
  in.imx = imx.data();
  in.full_norm = norm;
  std::vector<double> rc[2];
  for (int k = 0; k < 2; ++k) {
    const int lab = labels[k];
    if (full) in.full[k] = s.g2[lab].data();
    if (!fact) continue;
    rc[k].resize(size_t(rows));
    if (s.embedding && !s.linear) {  // F[v, i] = count_v * norm / rows_seen * row_sq[i]
      for (int64_t r = 0; r < rows; ++r) rc[k][size_t(r)] = s.row_count[size_t(r)] * norm / rows_seen;
      in.col[k] = s.row_sq[lab].data();
      in.col_rows = rows;
    } else if (s.n_mat > 1) {  // expert e: its own routed tokens' sums
      for (int64_t r = 0; r < rows; ++r) {
        const double cnt = s.mat_count[size_t(r / s.mat_rows())];
        rc[k][size_t(r)] = cnt > 0 ? s.row_sq[lab][size_t(r)] * norm / cnt : 0.0;
      }
      in.col[k] = s.col_sq.data();
      in.col_rows = s.mat_rows();
    } else {
      for (int64_t r = 0; r < rows; ++r) rc[k][size_t(r)] = s.row_sq[lab][size_t(r)] * norm / rows_seen;
      in.col[k] = s.col_sq.data();
      in.col_rows = rows;
    }
    in.row_coef[k] = rc[k].data();
  }
  const auto sums = round_trip_errors_cuda(types, in, device);
  std::vector<CandidatePrediction> out;
  for (size_t i = 0; i < types.size(); ++i) {
    CandidatePrediction cp;
    cp.type = types[i];
    cp.bytes = rows * ggml_row_size(types[i], cols);
    cp.dloss[kFisherModelFull] = 0.5 * sums[i][0];
    cp.dloss[kFisherEmpFull] = 0.5 * sums[i][1];
    cp.dloss[kFisherModelFact] = 0.5 * sums[i][2];
    cp.dloss[kFisherEmpFact] = 0.5 * sums[i][3];
    cp.dloss[kImatrixErr] = sums[i][4];
    out.push_back(cp);
  }
  return out;
}

}  // namespace
#endif

std::vector<CandidatePrediction> predict_tensor(const SensitivityAccumulator& acc, const TensorStats& s,
                                                const float* w, const float* quant_imatrix,
                                                const std::vector<GgmlType>& types, int cuda_device) {
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
#if defined(SAMQ_HAVE_CUDA)
  // (A non-finite weight goes to the CPU path, whose quantizer names it in its error.)
  if (cuda_device >= 0 && all_finite(w, rows * cols) &&
      std::all_of(types.begin(), types.end(), round_trip_cuda_supported))
    return predict_tensor_cuda(acc, s, w, quant_imatrix, imx, types, cuda_device);
#else
  if (cuda_device >= 0) fail("predict_tensor: samq was built without CUDA (cuda:{} requested)", cuda_device);
#endif
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
