// The analysis' quantizer round trips on the GPU (backend/cuda/round_trip_cuda.h) against the CPU:
//   - every supported type's dequantized round trip equals quant_round_trip's floats bit for bit
//     (plain and importance-weighted paths, outliers, an all-zero block, odd row counts);
//   - predict_tensor on cuda:0 equals the CPU's for every tensor of refcode-32m and of the tiny
//     Qwen3-MoE fixture (stacked experts, tests/data/archs/qwen3moe) within 1e-9 relative per
//     signal (only the summation order of the double sums differs).
// Each test skips without a GPU (ctest label gpu).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "analyze/fisher.h"
#include "analyze/imatrix.h"
#include "analyze/predict.h"
#include "backend/ops_backward.h"
#include "eval/perplexity.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/round_trip_cuda.h"
#include "common/test_env.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "quant/quantize.h"

namespace samq {
namespace {

#define REQUIRE_GPU() \
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU"

// Weights like a trained matrix: per-row scales, a few outlier columns, one all-zero block.
std::vector<float> weights(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<float> w(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float s = 0.01f * (1.f + float(r % 7));
    for (int64_t c = 0; c < cols; ++c) w[size_t(r * cols + c)] = s * n(g) * (c % 97 == 3 ? 20.f : 1.f);
  }
  for (int64_t c = 0; c < std::min<int64_t>(cols, 32); ++c) w[size_t(c)] = 0.f;
  return w;
}

std::vector<float> importance(int64_t cols, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(0.01f, 3.f);
  std::vector<float> v(static_cast<size_t>(cols));
  for (float& x : v) x = u(g) * u(g);
  return v;
}

TEST(CudaRoundTrip, EveryTypeEqualsCpuBitForBit) {
  REQUIRE_GPU();
  using T = GgmlType;
  for (T t : {T::F16, T::BF16, T::Q8_0, T::Q4_0, T::Q4_1, T::Q5_0, T::Q5_1, T::IQ4_NL, T::IQ4_XS, T::Q2_K, T::Q3_K,
              T::Q4_K, T::Q5_K, T::Q6_K}) {
    ASSERT_TRUE(round_trip_cuda_supported(t)) << ggml_type_name(t);
    for (int64_t cols : {int64_t(256), int64_t(1536)}) {
      const int64_t rows = 37;
      const auto w = weights(rows, cols, uint32_t(cols) + uint32_t(t));
      const auto im = importance(cols, 7);
      for (const float* qw : {static_cast<const float*>(nullptr), im.data()}) {
        std::vector<float> cpu(w.size()), gpu(w.size(), -1.f);
        quant_round_trip(t, w.data(), cpu.data(), rows, cols, qw);
        quant_round_trip_cuda(t, w.data(), gpu.data(), rows, cols, qw, 0);
        size_t differ = 0, first = 0;
        for (size_t i = 0; i < w.size(); ++i)
          if (std::memcmp(&cpu[i], &gpu[i], 4) != 0 && differ++ == 0) first = i;
        EXPECT_EQ(differ, 0u) << ggml_type_name(t) << " cols " << cols << (qw ? " weighted" : " plain") << ": first at "
                              << first << " cpu " << cpu[first] << " gpu " << gpu[first];
      }
    }
  }
}

TEST(CudaRoundTrip, RejectsWhatItCannotStore) {
  REQUIRE_GPU();
  std::vector<float> w(100, 1.f), out(100);
  EXPECT_THROW(quant_round_trip_cuda(GgmlType::Q4_K, w.data(), out.data(), 1, 100, nullptr, 0), Error);
  EXPECT_THROW(quant_round_trip_cuda(GgmlType::F32, w.data(), out.data(), 1, 100, nullptr, 0), Error);
  EXPECT_THROW(quant_round_trip_cuda(GgmlType::Q8_0, w.data(), out.data(), 1, 96, nullptr, 99), Error);
}

// Every tensor's predictions on cuda:0 against the CPU's (same accumulator, same weights).
void predictions_match(const std::string& model_dir) {
  auto m = Model::load(model_dir);
  const Tokenizer tok = load_tokenizer(*m);
  std::vector<int32_t> t = tokenize_eval_text(tok, read_file(test::shared_path("data/calib.txt")).substr(0, 4000));
  ASSERT_GE(t.size(), 257u);
  SensitivityAccumulator acc(*m, cpu_backward_ops());
  acc.add_chunk(std::span<const int32_t>(t.data(), 128), 0);
  acc.add_chunk(std::span<const int32_t>(t.data() + 128, 128), 1);
  double worst = 0;
  int n_checked = 0;
  for (const TensorStats& s : acc.stats()) {
    const Tensor* tt = m->find(s.name);
    if (!tt || tt->rows <= 1) continue;
    const std::vector<float> w = m->tensor_f32(*tt);
    const auto types = candidate_types(s.cols);
    const auto im = imatrix_collects(s.name) ? acc.imatrix(s) : std::vector<float>{};
    const auto c = predict_tensor(acc, s, w.data(), im.empty() ? nullptr : im.data(), types);
    const auto g = predict_tensor(acc, s, w.data(), im.empty() ? nullptr : im.data(), types, 0);
    ASSERT_EQ(c.size(), g.size());
    for (size_t i = 0; i < c.size(); ++i) {
      EXPECT_EQ(c[i].bytes, g[i].bytes);
      for (int k = 0; k < kNumSignals; ++k) {
        const double a = c[i].dloss[size_t(k)], b = g[i].dloss[size_t(k)];
        const double rel = std::abs(a - b) / std::max(std::abs(a), 1e-300);
        if (a == 0 && b == 0) continue;
        worst = std::max(worst, rel);
        EXPECT_LE(rel, 1e-9) << s.name << " " << ggml_type_name(c[i].type) << " " << predict_signal_name(k) << ": cpu "
                             << a << " gpu " << b;
      }
    }
    ++n_checked;
  }
  EXPECT_GT(n_checked, 10);
  std::printf("[ %s ] %d tensors, predictions on the GPU vs the CPU: worst relative difference %.3g\n",
              model_dir.c_str(), n_checked, worst);
}

TEST(CudaRoundTrip, PredictionsMatchCpuRefcode) {
  REQUIRE_GPU();
  predictions_match(test::shared_path("models/refcode-32m"));
}

TEST(CudaRoundTrip, PredictionsMatchCpuMoe) {
  REQUIRE_GPU();
  predictions_match(test::source_path("tests/data/archs/qwen3moe"));
}

}  // namespace
}  // namespace samq
