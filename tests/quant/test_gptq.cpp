// GPTQ (quant/gptq.h, quant/gptq_grid.h) against independent oracles: the types' own
// dequantizers, round-to-nearest with a diagonal Hessian, a brute-force OBQ with an explicit
// inverse-Hessian downdate, and the plain quantizer's Hessian-weighted error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <random>
#include <vector>

#include "common/random.h"
#include "core/ggml_type.h"
#include "core/parallel.h"
#include "quant/gptq.h"
#include "quant/gptq_grid.h"
#include "quant/quantize.h"

using namespace samq;

namespace {

const GgmlType kTypes[] = {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K,
                           GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::IQ4_XS, GgmlType::IQ4_NL,
                           GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1};

using samq::test::randn;

// H = X^T X for T tokens of correlated inputs: x_t = M z_t with a random mixing M and
// per-column scales spanning a factor ~10.
std::vector<float> correlated_hessian(int64_t n, int64_t T, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(0.3f, 3.0f);
  std::vector<float> M(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < n; ++k) M[size_t(i * n + k)] = (i == k ? 1.0f : 0.0f) + (std::abs(i - k) < 8 ? 0.6f * nd(g) : 0.0f);
  std::vector<float> sc(static_cast<size_t>(n));
  for (auto& s : sc) s = ud(g);
  std::vector<double> H(size_t(n * n), 0.0);
  std::vector<float> z(static_cast<size_t>(n)), x(static_cast<size_t>(n));
  for (int64_t t = 0; t < T; ++t) {
    for (auto& v : z) v = nd(g);
    for (int64_t i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t k = 0; k < n; ++k) s += double(M[size_t(i * n + k)]) * z[size_t(k)];
      x[size_t(i)] = float(s) * sc[size_t(i)];
    }
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < n; ++k) H[size_t(i * n + k)] += double(x[size_t(i)]) * x[size_t(k)];
  }
  return std::vector<float>(H.begin(), H.end());
}

}  // namespace

// The grid decoding agrees with the type's dequantizer, and packing arbitrary levels decodes
// to exactly the grid values.
TEST(GptqGrid, PackedLevelsDecodeToGridValues) {
  for (GgmlType t : kTypes) {
    SCOPED_TRACE(ggml_type_name(t));
    const int bs = grid_block_size(t);
    const size_t bb = size_t(ggml_type_info(t).type_size);
    std::vector<float> x = randn(size_t(bs), 7);
    std::vector<uint8_t> blk(bb);
    quantize_row(t, x.data(), blk.data(), bs, nullptr);
    std::vector<ElemGrid> g(static_cast<size_t>(bs));
    block_grid(t, blk.data(), g.data());
    std::vector<int> L(static_cast<size_t>(bs));
    get_block_levels(t, blk.data(), L.data());
    std::vector<float> y(static_cast<size_t>(bs));
    dequantize_row(t, blk.data(), y.data(), bs);
    for (int e = 0; e < bs; ++e) ASSERT_EQ(y[size_t(e)], g[size_t(e)].value(L[size_t(e)])) << "element " << e;
    // Random levels.
    std::mt19937 rng(11);
    for (int e = 0; e < bs; ++e) {
      std::uniform_int_distribution<int> d(g[size_t(e)].qmin, g[size_t(e)].qmax);
      L[size_t(e)] = d(rng);
    }
    // The extremes too.
    L[0] = g[0].qmin;
    L[1] = g[1].qmax;
    set_block_levels(t, blk.data(), L.data());
    dequantize_row(t, blk.data(), y.data(), bs);
    std::vector<int> L2(static_cast<size_t>(bs));
    get_block_levels(t, blk.data(), L2.data());
    for (int e = 0; e < bs; ++e) {
      ASSERT_EQ(y[size_t(e)], g[size_t(e)].value(L[size_t(e)])) << "element " << e;
      ASSERT_EQ(L2[size_t(e)], L[size_t(e)]) << "element " << e;
    }
    L[3] = g[3].qmax + 1;
    EXPECT_THROW(set_block_levels(t, blk.data(), L.data()), std::exception);
  }
}

TEST(GptqGrid, NearestIsNearest) {
  for (GgmlType t : kTypes) {
    SCOPED_TRACE(ggml_type_name(t));
    const int bs = grid_block_size(t);
    std::vector<float> x = randn(size_t(bs), 3);
    std::vector<uint8_t> blk(size_t(ggml_type_info(t).type_size));
    quantize_row(t, x.data(), blk.data(), bs, nullptr);
    std::vector<ElemGrid> g(static_cast<size_t>(bs));
    block_grid(t, blk.data(), g.data());
    std::vector<float> probe = randn(64, 5, 1.5f);
    for (int e = 0; e < bs; e += 7)
      for (float w : probe) {
        const int q = g[size_t(e)].nearest(w);
        float best = INFINITY;
        for (int c = g[size_t(e)].qmin; c <= g[size_t(e)].qmax; ++c) best = std::min(best, std::fabs(g[size_t(e)].value(c) - w));
        ASSERT_EQ(std::fabs(g[size_t(e)].value(q) - w), best);
      }
  }
}

// U^T U (H + lambda I) = I.
TEST(Gptq, InverseCholeskyFactor) {
  const int64_t n = 48;
  std::vector<float> H = correlated_hessian(n, 100, 1);
  const double damp = 0.01;
  std::vector<double> U = gptq_inverse_cholesky_upper(H.data(), n, damp);
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += H[size_t(i * n + i)];
  mean /= double(n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < i; ++j) ASSERT_EQ(U[size_t(i * n + j)], 0.0);
  double worst = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;  // (U^T U H_d)[i][j] = sum_k sum_l U[k][i] U[k][l] Hd[l][j]
      for (int64_t l = 0; l < n; ++l) {
        double uu = 0;
        for (int64_t k = 0; k < n; ++k) uu += U[size_t(k * n + i)] * U[size_t(k * n + l)];
        s += uu * (double(H[size_t(l * n + j)]) + (l == j ? damp * mean : 0.0));
      }
      worst = std::max(worst, std::fabs(s - (i == j ? 1.0 : 0.0)));
    }
  EXPECT_LT(worst, 1e-6);
}

// With a diagonal Hessian nothing propagates: GPTQ = the type's quantizer for the scales, then
// round-to-nearest on that grid.
TEST(Gptq, DiagonalHessianIsRoundToNearest) {
  for (GgmlType t : kTypes) {
    SCOPED_TRACE(ggml_type_name(t));
    const int64_t rows = 5, cols = 512;
    std::vector<float> W = randn(size_t(rows * cols), 21);
    std::vector<float> H(size_t(cols * cols), 0.0f);
    std::vector<float> dg = randn(size_t(cols), 22);
    for (int64_t i = 0; i < cols; ++i) H[size_t(i * cols + i)] = 0.1f + dg[size_t(i)] * dg[size_t(i)];
    const size_t rb = size_t(ggml_row_size(t, cols));
    std::vector<uint8_t> got(rb * rows), want(rb * rows);
    gptq_quantize_tensor(t, W.data(), got.data(), rows, cols, H.data());
    double mean = 0;
    for (int64_t i = 0; i < cols; ++i) mean += H[size_t(i * cols + i)];
    mean /= double(cols);
    std::vector<float> imp(static_cast<size_t>(cols));
    for (int64_t i = 0; i < cols; ++i) imp[size_t(i)] = float(double(H[size_t(i * cols + i)]) + 0.01 * mean);
    const int bs = grid_block_size(t);
    const size_t bb = size_t(ggml_type_info(t).type_size);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t b = 0; b < cols / bs; ++b) {
        uint8_t* blk = want.data() + size_t(r) * rb + size_t(b) * bb;
        const float* x = &W[size_t(r * cols + b * bs)];
        quantize_row(t, x, blk, bs, imp.data() + b * bs);
        std::vector<ElemGrid> g(static_cast<size_t>(bs));
        block_grid(t, blk, g.data());
        std::vector<int> L(static_cast<size_t>(bs));
        for (int e = 0; e < bs; ++e) L[size_t(e)] = g[size_t(e)].nearest(x[e]);
        set_block_levels(t, blk, L.data());
      }
    std::vector<float> a(size_t(rows * cols)), b(size_t(rows * cols));
    dequantize_tensor(t, got.data(), a.data(), rows, cols);
    dequantize_tensor(t, want.data(), b.data(), rows, cols);
    for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "element " << i;
  }
}

// One row, one Q8_0 block: the scale is fixed by the first block quantization; then OBQ
// quantizes columns left to right, updating the remaining weights by
// dw_F = -(w_j - q_j) / Hinv_jj * Hinv_{F,j} and downdating Hinv (explicit inverse, double).
// GPTQ's Cholesky formulation must choose the same levels.
TEST(Gptq, MatchesBruteForceObq) {
  const int64_t n = 32;
  std::vector<float> H = correlated_hessian(n, 40, 9);
  for (uint32_t seed = 0; seed < 5; ++seed) {
    std::vector<float> w = randn(size_t(n), 100 + seed);
    std::vector<uint8_t> got(size_t(ggml_row_size(GgmlType::Q8_0, n)));
    gptq_quantize_tensor(GgmlType::Q8_0, w.data(), got.data(), 1, n, H.data());
    ElemGrid g[32];
    block_grid(GgmlType::Q8_0, got.data(), g);  // d from the quantizer on the original weights
    // Brute force: explicit inverse of the damped H by Gauss-Jordan.
    double mean = 0;
    for (int64_t i = 0; i < n; ++i) mean += H[size_t(i * n + i)];
    mean /= double(n);
    std::vector<double> A(size_t(n * 2 * n), 0.0);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) A[size_t(i * 2 * n + j)] = H[size_t(i * n + j)] + (i == j ? 0.01 * mean : 0.0);
      A[size_t(i * 2 * n + n + i)] = 1;
    }
    for (int64_t c = 0; c < n; ++c) {
      int64_t p = c;
      for (int64_t r = c + 1; r < n; ++r)
        if (std::fabs(A[size_t(r * 2 * n + c)]) > std::fabs(A[size_t(p * 2 * n + c)])) p = r;
      for (int64_t k = 0; k < 2 * n; ++k) std::swap(A[size_t(c * 2 * n + k)], A[size_t(p * 2 * n + k)]);
      const double piv = A[size_t(c * 2 * n + c)];
      for (int64_t k = 0; k < 2 * n; ++k) A[size_t(c * 2 * n + k)] /= piv;
      for (int64_t r = 0; r < n; ++r) {
        if (r == c) continue;
        const double f = A[size_t(r * 2 * n + c)];
        for (int64_t k = 0; k < 2 * n; ++k) A[size_t(r * 2 * n + k)] -= f * A[size_t(c * 2 * n + k)];
      }
    }
    std::vector<double> Hi(static_cast<size_t>(n * n));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) Hi[size_t(i * n + j)] = A[size_t(i * 2 * n + n + j)];
    std::vector<double> ww(w.begin(), w.end());
    std::vector<int> want(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      const int q = g[j].nearest(float(ww[size_t(j)]));
      want[size_t(j)] = q;
      const double e = (ww[size_t(j)] - double(g[j].value(q))) / Hi[size_t(j * n + j)];
      for (int64_t k = j + 1; k < n; ++k) ww[size_t(k)] -= e * Hi[size_t(k * n + j)];
      // Downdate: remove j.
      std::vector<double> col(static_cast<size_t>(n));
      for (int64_t k = 0; k < n; ++k) col[size_t(k)] = Hi[size_t(k * n + j)];
      const double hjj = Hi[size_t(j * n + j)];
      for (int64_t a = 0; a < n; ++a)
        for (int64_t b = 0; b < n; ++b) Hi[size_t(a * n + b)] -= col[size_t(a)] * col[size_t(b)] / hjj;
    }
    std::vector<int> L(static_cast<size_t>(n));
    get_block_levels(GgmlType::Q8_0, got.data(), L.data());
    int diff = 0;
    for (int64_t j = 0; j < n; ++j) diff += L[size_t(j)] != want[size_t(j)];
    EXPECT_EQ(diff, 0) << "seed " << seed;
    // And propagation did something: RTN of the original weights differs.
    int rtn_diff = 0;
    for (int64_t j = 0; j < n; ++j) rtn_diff += g[j].nearest(w[size_t(j)]) != want[size_t(j)];
    EXPECT_GT(rtn_diff, 0) << "seed " << seed;
  }
}

// On correlated inputs GPTQ's ||(W-Q)X^T||^2 is below the plain (imatrix = diag H) quantizer's.
TEST(Gptq, BeatsPlainQuantizerOnCorrelatedInputs) {
  const int64_t rows = 24, cols = 256;
  std::vector<float> H = correlated_hessian(cols, 600, 5);
  std::vector<float> W = randn(size_t(rows * cols), 6, 0.05f);
  std::vector<float> diag(static_cast<size_t>(cols));
  for (int64_t i = 0; i < cols; ++i) diag[size_t(i)] = H[size_t(i * cols + i)];
  for (GgmlType t : kTypes) {
    SCOPED_TRACE(ggml_type_name(t));
    const size_t rb = size_t(ggml_row_size(t, cols));
    std::vector<uint8_t> q(rb * rows), p(rb * rows);
    gptq_quantize_tensor(t, W.data(), q.data(), rows, cols, H.data());
    quantize_tensor(t, W.data(), p.data(), rows, cols, diag.data());
    std::vector<float> a(size_t(rows * cols)), b(size_t(rows * cols));
    dequantize_tensor(t, q.data(), a.data(), rows, cols);
    dequantize_tensor(t, p.data(), b.data(), rows, cols);
    const double eg = hessian_weighted_error(W.data(), a.data(), rows, cols, H.data());
    const double ep = hessian_weighted_error(W.data(), b.data(), rows, cols, H.data());
    std::printf("%-7s gptq/plain Hessian-weighted error %.3f\n", std::string(ggml_type_name(t)).c_str(), eg / ep);
    EXPECT_LT(eg, 0.9 * ep);
  }
}

TEST(Gptq, ThreadCountIndependentAndErrors) {
  const int64_t rows = 16, cols = 256;
  std::vector<float> H = correlated_hessian(cols, 300, 2);
  std::vector<float> W = randn(size_t(rows * cols), 3);
  const size_t rb = size_t(ggml_row_size(GgmlType::Q4_K, cols));
  std::vector<uint8_t> a(rb * rows), b(rb * rows);
  const int nt = num_threads();
  set_num_threads(1);
  gptq_quantize_tensor(GgmlType::Q4_K, W.data(), a.data(), rows, cols, H.data());
  set_num_threads(3);
  gptq_quantize_tensor(GgmlType::Q4_K, W.data(), b.data(), rows, cols, H.data());
  set_num_threads(nt);
  EXPECT_EQ(a, b);
  EXPECT_THROW(gptq_quantize_tensor(GgmlType::F16, W.data(), nullptr, rows, cols, H.data()), std::exception);
  std::vector<uint8_t> bad(4096);
  std::vector<float> H48(48 * 48, 0.f);
  EXPECT_THROW(gptq_quantize_tensor(GgmlType::Q4_K, W.data(), bad.data(), 2, 48, H48.data()), std::exception);
}
