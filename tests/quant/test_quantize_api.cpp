// The public API: whole-tensor quantization is deterministic across thread counts, round
// trips agree with quantize+dequantize, errors name the problem, and basic accuracy
// properties hold on synthetic data (zeros stay zero, more bits never hurt on Gaussians).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "quant/quantize.h"

using namespace samq;

namespace {

const std::vector<GgmlType> kAll = {
    GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0,
    GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q2_K, GgmlType::Q3_K,
    GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_NL, GgmlType::IQ4_XS};

// Gaussian weights with 1% outliers, and a positive importance vector.
std::vector<float> synth(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 0.02f);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = u(rng) < 0.01f ? 8.f * g(rng) : g(rng);
  return x;
}

std::vector<float> synth_imatrix(int64_t cols) {
  std::mt19937 rng(7);
  std::gamma_distribution<float> g(0.7f, 2.f);
  std::vector<float> w(static_cast<size_t>(cols));
  for (auto& v : w) v = g(rng) + 1e-3f;
  return w;
}

struct ThreadGuard {
  int saved = num_threads();
  ~ThreadGuard() { set_num_threads(saved); }
};

}  // namespace

TEST(QuantizeTensor, SameBytesForOneTwoThreeThreads) {
  ThreadGuard guard;
  const int64_t rows = 601, cols = 256;  // three parallel chunks of 256 rows, odd row count
  const auto x = synth(rows * cols, 1);
  const auto im = synth_imatrix(cols);
  for (GgmlType t : kAll)
    for (const float* qw : {static_cast<const float*>(nullptr), im.data()}) {
      const size_t bytes = static_cast<size_t>(rows * ggml_row_size(t, cols));
      std::vector<uint8_t> ref(bytes), out(bytes);
      set_num_threads(1);
      ASSERT_EQ(quantize_tensor(t, x.data(), ref.data(), rows, cols, qw), bytes);
      for (int nt : {2, 3}) {
        set_num_threads(nt);
        std::fill(out.begin(), out.end(), uint8_t(0xAA));
        quantize_tensor(t, x.data(), out.data(), rows, cols, qw);
        EXPECT_EQ(std::memcmp(ref.data(), out.data(), bytes), 0)
            << ggml_type_name(t) << (qw ? " imatrix" : "") << " threads=" << nt;
      }
      // Row by row gives the same bytes as the whole tensor.
      std::vector<uint8_t> row(static_cast<size_t>(ggml_row_size(t, cols)));
      quantize_row(t, x.data() + 5 * cols, row.data(), cols, qw);
      EXPECT_EQ(std::memcmp(row.data(), ref.data() + 5 * row.size(), row.size()), 0) << ggml_type_name(t);
    }
}

TEST(QuantizeTensor, RoundTripEqualsQuantizeThenDequantize) {
  const int64_t rows = 9, cols = 768;
  const auto x = synth(rows * cols, 2);
  const auto im = synth_imatrix(cols);
  for (GgmlType t : kAll)
    for (const float* qw : {static_cast<const float*>(nullptr), im.data()}) {
      std::vector<uint8_t> q(static_cast<size_t>(rows * ggml_row_size(t, cols)));
      std::vector<float> a(x.size()), b(x.size());
      quantize_tensor(t, x.data(), q.data(), rows, cols, qw);
      dequantize_tensor(t, q.data(), a.data(), rows, cols);
      quant_round_trip(t, x.data(), b.data(), rows, cols, qw);
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << ggml_type_name(t);
    }
}

TEST(QuantizeTensor, ErrorsNameTheProblem) {
  std::vector<float> x(256), y(256);
  std::vector<uint8_t> q(4096);
  EXPECT_FALSE(quant_supported(GgmlType::Q8_K));
  EXPECT_FALSE(quant_supported(GgmlType::IQ2_XXS));
  try {
    quantize_row(GgmlType::IQ2_XXS, x.data(), q.data(), 256, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("iq2_xxs"), std::string::npos) << e.what();
  }
  try {
    quantize_tensor(GgmlType::Q4_K, x.data(), q.data(), 1, 96, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q4_K"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dequantize_row(GgmlType::Q5_0, q.data(), y.data(), 33), Error);
}

TEST(QuantizeTensor, ZerosStayZeroAndFloatsAreExact) {
  const int64_t cols = 512;
  std::vector<float> zero(cols, 0.f), out(cols, 1.f);
  for (GgmlType t : kAll) {
    quant_round_trip(t, zero.data(), out.data(), 1, cols, nullptr);
    for (float v : out) ASSERT_EQ(v, 0.f) << ggml_type_name(t);
  }
  // Values representable in fp16 and bf16 (small integers times powers of two) survive.
  std::vector<float> x(cols);
  for (int64_t i = 0; i < cols; ++i) x[i] = std::ldexp(float(i % 17) - 8.f, int(i % 7) - 3);
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16}) {
    quant_round_trip(t, x.data(), out.data(), 1, cols, nullptr);
    EXPECT_EQ(std::memcmp(x.data(), out.data(), cols * 4), 0) << ggml_type_name(t);
  }
}

TEST(QuantizeTensor, MoreBitsNeverHurtOnGaussianWeights) {
  const int64_t rows = 16, cols = 1024;
  const auto x = synth(rows * cols, 3);
  const auto im = synth_imatrix(cols);
  auto err = [&](GgmlType t, const float* qw) {
    std::vector<float> y(x.size());
    quant_round_trip(t, x.data(), y.data(), rows, cols, qw);
    return weighted_sq_error(x.data(), y.data(), rows, cols, qw);
  };
  for (const float* qw : {static_cast<const float*>(nullptr), im.data()}) {
    const std::vector<GgmlType> ladder = {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K,
                                          GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_0,
                                          GgmlType::F16};
    for (size_t i = 1; i < ladder.size(); ++i)
      EXPECT_LT(err(ladder[i], qw), err(ladder[i - 1], qw))
          << ggml_type_name(ladder[i]) << " vs " << ggml_type_name(ladder[i - 1]);
    EXPECT_LT(err(GgmlType::Q5_0, qw), err(GgmlType::Q4_0, qw));
    EXPECT_LT(err(GgmlType::Q5_1, qw), err(GgmlType::Q4_1, qw));
    EXPECT_LT(err(GgmlType::IQ4_NL, qw), err(GgmlType::Q3_K, qw));
  }
  // The importance-weighted search lowers the importance-weighted error.
  for (GgmlType t : {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q4_0, GgmlType::IQ4_XS}) {
    std::vector<float> a(x.size()), b(x.size());
    quant_round_trip(t, x.data(), a.data(), rows, cols, nullptr);
    quant_round_trip(t, x.data(), b.data(), rows, cols, im.data());
    EXPECT_LT(weighted_sq_error(x.data(), b.data(), rows, cols, im.data()),
              weighted_sq_error(x.data(), a.data(), rows, cols, im.data()))
        << ggml_type_name(t);
  }
}

TEST(QuantizeTensor, NonFiniteInputIsAnErrorNamingRowAndColumn) {
  const int64_t rows = 3, cols = 256;
  std::vector<float> x(rows * cols, 0.5f), y(rows * cols);
  std::vector<uint8_t> q(static_cast<size_t>(rows * ggml_row_size(GgmlType::Q4_K, cols)));
  x[2 * cols + 17] = std::nanf("");
  try {
    quantize_tensor(GgmlType::Q4_K, x.data(), q.data(), rows, cols, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 2, column 17"), std::string::npos) << e.what();
  }
  x[2 * cols + 17] = INFINITY;
  EXPECT_THROW(quant_round_trip(GgmlType::Q8_0, x.data(), y.data(), rows, cols, nullptr), Error);
  x[2 * cols + 17] = 0.f;
  std::vector<float> im(cols, 1.f);
  im[5] = std::nanf("");
  EXPECT_THROW(quantize_tensor(GgmlType::Q6_K, x.data(), q.data(), rows, cols, im.data()), Error);
  // F32 is a copy: no check, NaN passes through unchanged.
  x[0] = std::nanf("");
  quant_round_trip(GgmlType::F32, x.data(), y.data(), rows, cols, nullptr);
  EXPECT_TRUE(std::isnan(y[0]));
}
