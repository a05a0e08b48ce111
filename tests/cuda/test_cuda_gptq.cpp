// GPTQ on the GPU (backend/cuda/gptq_cuda.h) against the CPU's gptq_quantize_tensor and
// gptq_inverse_cholesky_upper (quant/gptq.h) on the same inputs.
//
// Where the bounds come from:
//  - U: both sides factor the same damped matrix (identical bits: same lambda, same double
//    operations) by a backward-stable Cholesky and triangular inverse in double, in different
//    orders. The forward error of such an inverse factor is ~ n * kappa * eps in norm
//    (eps = 1.1e-16); these Hessians have kappa <= ~1e4 (printed: lambda_max from Gershgorin over
//    lambda_min >= lambda), so ~1e-10 at n = 1024, under the 1e-9 asserted (max |dU| / max |U|).
//  - Output, exact update (the default): the beyond-batch update performs the CPU's float
//    operations in the CPU's order, and the in-batch step is the CPU's own code, so the bytes can
//    differ only where U's float copy differs: a double entry moves by ~1e-12 relative, which
//    changes its float rounding with probability ~1e-12 / 2^-24 ~ 2e-5, and such a one-ulp change
//    flips a level only if an element lies within ~1e-7 relative of a rounding decision. Expected
//    differing blocks: far below 1%; asserted: >= 99% identical, Hessian-weighted error within 1%.
//  - Output, SGEMM update: float summation order differs from the CPU's (FMA, blocked sums), w
//    moves by a few ulps, and an element within that distance of a decision takes the other level;
//    its changed error then propagates along the rest of its row, so a few percent of the blocks
//    may differ (a CPU emulation of FMA-accumulated sums gave 92.6-100% identical). The quality
//    must not change: Hessian-weighted error within 1% (the emulation: within 0.22%), and the
//    first batch (no update before it) byte-identical.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gptq_cuda.h"
#include "common/random.h"
#include "core/error.h"
#include "core/ggml_type.h"
#include "core/parallel.h"
#include "quant/gptq.h"
#include "quant/quantize.h"

using namespace samq;

namespace {

// H = X^T X / T for T = 2n tokens of N(0, 1) inputs, every 61st column (from 3) scaled by 15
// (outlier channels), and column `dead` (if >= 0) always zero (a never-active input).
std::vector<float> hessian(int64_t n, uint32_t seed, int64_t dead = -1) {
  const int64_t T = 2 * n;
  std::vector<float> X = samq::test::randn(size_t(T * n), seed);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t c = 3; c < n; c += 61) X[size_t(t * n + c)] *= 15.0f;
    if (dead >= 0) X[size_t(t * n + dead)] = 0.0f;
  }
  // Xt: column-major copy so that each (i, j) sum runs over contiguous memory.
  std::vector<float> Xt(size_t(T * n));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < n; ++i) Xt[size_t(i * T + t)] = X[size_t(t * n + i)];
  std::vector<float> H(size_t(n * n));
  parallel_for(n, 8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        const float* xi = &Xt[size_t(i * T)];
        const float* xj = &Xt[size_t(j * T)];
        for (int64_t t = 0; t < T; ++t) s += double(xi[t]) * double(xj[t]);
        H[size_t(i * n + j)] = float(s / double(T));
      }
  });
  return H;
}

// Upper bound of kappa(H + lambda I) for a positive semidefinite H: Gershgorin's lambda_max over
// lambda_min >= lambda.
double kappa_bound(const std::vector<float>& H, int64_t n, double damp) {
  const double lambda = gptq_damping_lambda(H.data(), n, damp);
  double gmax = 0;
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += std::fabs(double(H[size_t(i * n + j)]));
    gmax = std::max(gmax, s);
  }
  return (gmax + lambda) / lambda;
}

struct Compare {
  double identical = 0;        // fraction of byte-identical blocks
  double first_identical = 0;  // same, over the blocks of the first lazy batch
  double herr_cpu = 0, herr_gpu = 0;
};

Compare compare(GgmlType t, int64_t rows, int64_t cols, const std::vector<float>& W, const std::vector<float>& H,
                GptqCudaUpdate mode) {
  const size_t bytes = size_t(rows) * size_t(ggml_row_size(t, cols));
  const size_t bb = size_t(ggml_type_info(t).type_size);
  const int64_t bs = ggml_type_info(t).block_size;
  const int64_t blocks_per_row = cols / bs;
  const int64_t first_blocks = std::min(cols, gptq_batch_columns(t)) / bs;
  std::vector<uint8_t> cpu(bytes), gpu(bytes, 0xAB);
  GptqOptions opt;
  EXPECT_EQ(gptq_quantize_tensor(t, W.data(), cpu.data(), rows, cols, H.data(), opt), bytes);
  GptqCudaConfig cfg;
  cfg.update = mode;
  EXPECT_EQ(gptq_quantize_tensor_cuda(t, W.data(), gpu.data(), rows, cols, H.data(), opt, 0, cfg), bytes);
  Compare c;
  size_t same = 0, first_same = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < blocks_per_row; ++b) {
      const size_t off = size_t(r * blocks_per_row + b) * bb;
      const bool eq = std::memcmp(&cpu[off], &gpu[off], bb) == 0;
      same += eq;
      if (b < first_blocks) first_same += eq;
    }
  c.identical = double(same) / double(rows * blocks_per_row);
  c.first_identical = double(first_same) / double(rows * first_blocks);
  std::vector<float> qc(size_t(rows * cols)), qg(size_t(rows * cols));
  dequantize_row(t, cpu.data(), qc.data(), rows * cols);
  dequantize_row(t, gpu.data(), qg.data(), rows * cols);
  c.herr_cpu = hessian_weighted_error(W.data(), qc.data(), rows, cols, H.data());
  c.herr_gpu = hessian_weighted_error(W.data(), qg.data(), rows, cols, H.data());
  return c;
}

const GgmlType kTypes[] = {GgmlType::Q4_K, GgmlType::Q2_K, GgmlType::Q6_K,
                           GgmlType::Q8_0, GgmlType::IQ4_XS, GgmlType::Q4_0};

struct Shape {
  int64_t rows, cols;
};
// 96 rows: a partial 64-row tile of the update kernel (OddShapes has more).
const Shape kShapes[] = {{96, 512}, {64, 1024}};

void check_types(GptqCudaUpdate mode) {
  for (const Shape& s : kShapes) {
    const std::vector<float> H = hessian(s.cols, uint32_t(s.cols), s.cols / 2 + 1);
    const std::vector<float> W = samq::test::randn(size_t(s.rows * s.cols), uint32_t(s.rows + 7 * s.cols));
    for (GgmlType t : kTypes) {
      SCOPED_TRACE(std::string(ggml_type_name(t)) + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols));
      const Compare c = compare(t, s.rows, s.cols, W, H, mode);
      std::printf("%-7s %4lldx%-5lld identical blocks %.4f (first batch %.4f)  H-weighted error gpu/cpu %.6f\n",
                  std::string(ggml_type_name(t)).c_str(), (long long)s.rows, (long long)s.cols, c.identical,
                  c.first_identical, c.herr_gpu / c.herr_cpu);
      EXPECT_EQ(c.first_identical, 1.0);
      if (mode == GptqCudaUpdate::Exact) EXPECT_GE(c.identical, 0.99);
      EXPECT_NEAR(c.herr_gpu / c.herr_cpu, 1.0, 0.01);
    }
  }
}

}  // namespace

TEST(CudaGptq, InverseCholeskyMatchesCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  // 300: partial 32 x 32 tiles of the damping and reversal kernels; a dead column in each.
  for (int64_t n : {300, 512, 1024}) {
    SCOPED_TRACE(n);
    const std::vector<float> H = hessian(n, uint32_t(100 + n), n / 3);
    const double damp = 0.01;
    const std::vector<double> Uc = gptq_inverse_cholesky_upper(H.data(), n, damp);
    const std::vector<double> Ug = gptq_inverse_cholesky_upper_cuda(H.data(), n, damp, 0);
    ASSERT_EQ(Ug.size(), Uc.size());
    double umax = 0, dmax = 0, diag_rel = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const double a = Uc[size_t(i * n + j)], b = Ug[size_t(i * n + j)];
        if (j < i) ASSERT_EQ(b, 0.0) << "below the diagonal at " << i << "," << j;
        umax = std::max(umax, std::fabs(a));
        dmax = std::max(dmax, std::fabs(a - b));
        if (i == j) diag_rel = std::max(diag_rel, std::fabs(a - b) / std::fabs(a));
      }
    std::printf("n=%lld: max|dU|/max|U| = %.3e, max diagonal rel = %.3e, kappa bound %.3e\n", (long long)n, dmax / umax,
                diag_rel, kappa_bound(H, n, damp));
    EXPECT_LE(dmax / umax, 1e-9);
    EXPECT_LE(diag_rel, 1e-9);
  }
}

TEST(CudaGptq, MatchesCpuExactUpdate) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  check_types(GptqCudaUpdate::Exact);
}

TEST(CudaGptq, MatchesCpuQualitySgemmUpdate) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  check_types(GptqCudaUpdate::Sgemm);
}

// Partial tiles everywhere: 37 rows (64-row tiles), 480 columns (128-column batches and tiles:
// the last batch has 96 columns).
// The in-batch step on the device (the default) against the CPU's own step run on the host
// (device_steps = false) inside the same GPU GPTQ: the same U, so the bytes must be identical, for
// every type GPTQ supports.
TEST(CudaGptq, DeviceInBatchStepsEqualHostSteps) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  const int64_t rows = 70, cols = 768;
  const std::vector<float> H = hessian(cols, 11, 5);
  const std::vector<float> W = samq::test::randn(size_t(rows * cols), 12);
  using T = GgmlType;
  for (T t : {T::Q2_K, T::Q3_K, T::Q4_K, T::Q5_K, T::Q6_K, T::Q8_0, T::Q4_0, T::Q4_1, T::Q5_0, T::Q5_1, T::IQ4_NL,
              T::IQ4_XS}) {
    const size_t bytes = size_t(rows) * size_t(ggml_row_size(t, cols));
    std::vector<uint8_t> dev(bytes, 0x11), host(bytes, 0x22);
    GptqCudaConfig cd, ch;
    ch.device_steps = false;
    GptqCudaTimings td, th;
    cd.timings = &td;
    ch.timings = &th;
    gptq_quantize_tensor_cuda(t, W.data(), dev.data(), rows, cols, H.data(), GptqOptions{}, 0, cd);
    gptq_quantize_tensor_cuda(t, W.data(), host.data(), rows, cols, H.data(), GptqOptions{}, 0, ch);
    size_t differ = 0;
    for (size_t i = 0; i < bytes; ++i) differ += dev[i] != host[i];
    EXPECT_EQ(differ, 0u) << ggml_type_name(t);
    std::printf("%-7s device in-batch steps: %zu of %zu bytes differ from the host steps; batches %.4f s (host %.4f s)\n",
                std::string(ggml_type_name(t)).c_str(), differ, bytes, td.batches, th.batches);
  }
}

TEST(CudaGptq, OddShapes) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  const int64_t rows = 37, cols = 480;
  const std::vector<float> H = hessian(cols, 5);
  const std::vector<float> W = samq::test::randn(size_t(rows * cols), 6);
  for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::IQ4_NL}) {
    SCOPED_TRACE(ggml_type_name(t));
    for (GptqCudaUpdate mode : {GptqCudaUpdate::Exact, GptqCudaUpdate::Sgemm}) {
      const Compare c = compare(t, rows, cols, W, H, mode);
      EXPECT_EQ(c.first_identical, 1.0);
      if (mode == GptqCudaUpdate::Exact) EXPECT_GE(c.identical, 0.99);
      EXPECT_NEAR(c.herr_gpu / c.herr_cpu, 1.0, 0.01);
    }
  }
}

// The default entry point (exact update) and timings.
TEST(CudaGptq, DefaultEntryPointAndTimings) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  const int64_t rows = 16, cols = 512;
  const std::vector<float> H = hessian(cols, 9);
  const std::vector<float> W = samq::test::randn(size_t(rows * cols), 10);
  const GgmlType t = GgmlType::Q4_K;
  const size_t bytes = size_t(rows) * size_t(ggml_row_size(t, cols));
  std::vector<uint8_t> a(bytes), b(bytes);
  ASSERT_EQ(gptq_quantize_tensor_cuda(t, W.data(), a.data(), rows, cols, H.data(), GptqOptions{}, 0), bytes);
  GptqCudaTimings tm;
  GptqCudaConfig cfg;
  cfg.timings = &tm;
  ASSERT_EQ(gptq_quantize_tensor_cuda(t, W.data(), b.data(), rows, cols, H.data(), GptqOptions{}, 0, cfg), bytes);
  EXPECT_EQ(a, b);  // deterministic
  EXPECT_GT(tm.total, 0.0);
  EXPECT_GE(tm.total, tm.h_upload + tm.inverse + tm.w_upload + tm.batches);
  EXPECT_GE(tm.batches, tm.host_steps);
}

// Not positive definite: H = I except a block [[1, 2], [2, 1]] (eigenvalue -1, far below -lambda).
// The CPU factors J H J and fails at the second of the two reversed indices; the GPU must report
// the same pivot in the same words.
TEST(CudaGptq, NotPositiveDefinite) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  const int64_t n = 256;
  std::vector<float> H(size_t(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i) H[size_t(i * n + i)] = 1.0f;
  H[size_t(100 * n + 101)] = H[size_t(101 * n + 100)] = 2.0f;
  const std::vector<float> W = samq::test::randn(size_t(4 * n), 3);
  std::vector<uint8_t> q(size_t(4 * ggml_row_size(GgmlType::Q4_K, n)));
  std::string cpu_msg, gpu_msg, gpu_inv_msg;
  try {
    gptq_quantize_tensor(GgmlType::Q4_K, W.data(), q.data(), 4, n, H.data(), GptqOptions{});
  } catch (const Error& e) {
    cpu_msg = e.what();
  }
  try {
    gptq_quantize_tensor_cuda(GgmlType::Q4_K, W.data(), q.data(), 4, n, H.data(), GptqOptions{}, 0);
  } catch (const Error& e) {
    gpu_msg = e.what();
  }
  try {
    gptq_inverse_cholesky_upper_cuda(H.data(), n, 0.01, 0);
  } catch (const Error& e) {
    gpu_inv_msg = e.what();
  }
  const std::string expect = "gptq: the damped Hessian is not positive definite (pivot 155 = ";
  EXPECT_EQ(cpu_msg.rfind(expect, 0), 0u) << cpu_msg;
  EXPECT_EQ(gpu_msg.rfind(expect, 0), 0u) << gpu_msg;
  EXPECT_EQ(gpu_inv_msg.rfind(expect, 0), 0u) << gpu_inv_msg;

  // A NaN entry: the CPU's pivot test fails on it; so must the GPU's (cuSOLVER may not flag NaN).
  std::vector<float> Hn(size_t(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i) Hn[size_t(i * n + i)] = 1.0f;
  Hn[size_t(7 * n + 9)] = NAN;
  EXPECT_THROW(gptq_quantize_tensor(GgmlType::Q4_K, W.data(), q.data(), 4, n, Hn.data(), GptqOptions{}), Error);
  try {
    gptq_quantize_tensor_cuda(GgmlType::Q4_K, W.data(), q.data(), 4, n, Hn.data(), GptqOptions{}, 0);
    ADD_FAILURE() << "no error for a NaN Hessian";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not positive definite"), std::string::npos) << e.what();
  }
}

TEST(CudaGptq, RejectsWhatTheCpuRejects) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  const int64_t n = 256;
  std::vector<float> H(size_t(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i) H[size_t(i * n + i)] = 1.0f;
  const std::vector<float> W = samq::test::randn(size_t(2 * n), 4);
  std::vector<uint8_t> q(size_t(2 * n * 4));
  EXPECT_THROW(gptq_quantize_tensor_cuda(GgmlType::F16, W.data(), q.data(), 2, n, H.data(), GptqOptions{}, 0), Error);
  // 96 columns: not a multiple of Q4_K's 256-element blocks.
  EXPECT_THROW(gptq_quantize_tensor_cuda(GgmlType::Q4_K, W.data(), q.data(), 2, 96, H.data(), GptqOptions{}, 0), Error);
  try {
    gptq_quantize_tensor_cuda(GgmlType::Q4_K, W.data(), q.data(), 2, n, H.data(), GptqOptions{}, cuda_device_count());
    ADD_FAILURE() << "no error for a missing device";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
}
