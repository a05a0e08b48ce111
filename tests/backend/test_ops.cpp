// Every fast CPU op (cpu_ops) against its scalar reference (reference_ops) on odd shapes, and
// the reference itself against hand-derived values where a closed form exists.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/simd.h"
#include "backend/ops.h"
#include "common/compare.h"
#include "common/random.h"
#include "core/fp16.h"
#include "core/parallel.h"
#include "quant/quantize.h"

using namespace samq;

namespace {

using test::max_abs_diff;
using test::randn;

// A weight of `type` quantized from Gaussian values; returns the packed bytes.
std::vector<uint8_t> make_weight(GgmlType type, int64_t rows, int64_t cols, uint32_t seed, WeightView* v) {
  const auto src = randn(rows * cols, seed, 0.5f);
  const int64_t rb = ggml_row_size(type, cols);
  std::vector<uint8_t> bytes(rows * rb);
  for (int64_t r = 0; r < rows; ++r) {
    if (type == GgmlType::F32)
      std::memcpy(&bytes[r * rb], &src[r * cols], cols * 4);
    else if (type == GgmlType::F16)
      for (int64_t c = 0; c < cols; ++c) reinterpret_cast<uint16_t*>(&bytes[r * rb])[c] = f32_to_fp16(src[r * cols + c]);
    else if (type == GgmlType::BF16)
      for (int64_t c = 0; c < cols; ++c) reinterpret_cast<uint16_t*>(&bytes[r * rb])[c] = f32_to_bf16(src[r * cols + c]);
    else
      quantize_row(type, &src[r * cols], &bytes[r * rb], cols, nullptr);
  }
  *v = {type, rows, cols, bytes.data(), rb};
  return bytes;
}

}  // namespace

TEST(Simd, DotAndAxpyEveryLevelOddLengths) {
  for (const char* lvl : {"scalar", "avx2", "avx512"}) {
    if (!cpu::force_simd_level(lvl)) continue;
    for (int64_t n : {1, 7, 15, 16, 17, 33, 100, 257}) {
      const auto a = randn(n, 1), b = randn(n, 2);
      double ref = 0;
      for (int64_t i = 0; i < n; ++i) ref += double(a[i]) * b[i];
      EXPECT_NEAR(cpu::dot_f32(a.data(), b.data(), n), ref, 1e-4 * std::sqrt(double(n))) << lvl << " n=" << n;
      auto y = b;
      cpu::axpy_f32(0.5f, a.data(), y.data(), n);
      for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y[i], b[i] + 0.5f * a[i], 1e-6) << lvl;
    }
  }
  cpu::force_simd_level("avx512") || cpu::force_simd_level("avx2");
}

TEST(Ops, MatmulFastMatchesReferenceAllTypesAndShapes) {
  const GgmlType types[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0,
                            GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q3_K, GgmlType::Q2_K, GgmlType::Q5_0, GgmlType::Q5_K,
                            GgmlType::IQ4_XS};
  for (GgmlType t : types) {
    const int64_t blk = ggml_type_info(t).block_size;
    const int64_t cols = blk == 1 ? 37 : 2 * blk;
    for (int64_t rows : {1, 13, 70}) {
      for (int64_t n : {1, 3, 9, 21}) {
        WeightView w;
        auto keep = make_weight(t, rows, cols, uint32_t(rows * 7 + n), &w);
        const auto x = randn(n * cols, 99);
        const auto bias = randn(rows, 5);
        std::vector<float> yr(n * rows), yf(n * rows);
        reference_ops().matmul(x.data(), n, w, bias.data(), yr.data());
        cpu_ops().matmul(x.data(), n, w, bias.data(), yf.data());
        EXPECT_LT(max_abs_diff(yr, yf), 2e-4 * std::sqrt(double(cols)))
            << ggml_type_name(t) << " rows=" << rows << " n=" << n;
      }
    }
  }
}

TEST(Ops, MatmulReferenceIsPlainProduct) {
  // 2x3 weight, hand-computed products.
  const float W[6] = {1, 2, 3, -1, 0.5f, 2};
  const float x[3] = {1, -2, 0.5f};
  WeightView w{GgmlType::F32, 2, 3, W, 12};
  float y[2];
  reference_ops().matmul(x, 1, w, nullptr, y);
  EXPECT_FLOAT_EQ(y[0], 1 - 4 + 1.5f);
  EXPECT_FLOAT_EQ(y[1], -1 - 1 + 1.0f);
}

TEST(Ops, GetRowsMatchesDequantization) {
  WeightView w;
  auto keep = make_weight(GgmlType::Q4_K, 11, 256, 3, &w);
  const int32_t ids[4] = {10, 0, 5, 5};
  std::vector<float> a(4 * 256), b(4 * 256);
  reference_ops().get_rows(w, ids, 4, a.data());
  cpu_ops().get_rows(w, ids, 4, b.data());
  EXPECT_EQ(a, b);
  const int32_t bad = 11;
  EXPECT_THROW(cpu_ops().get_rows(w, &bad, 1, b.data()), std::exception);
}

TEST(Ops, RmsNormFastMatchesReference) {
  for (int64_t d : {1, 5, 64, 257}) {
    const int64_t n = 7;
    const auto x = randn(n * d, 4), g = randn(d, 8);
    std::vector<float> a(n * d), b(n * d), ra(n), rb(n);
    reference_ops().rms_norm(x.data(), n, d, g.data(), 1e-5f, a.data(), ra.data());
    cpu_ops().rms_norm(x.data(), n, d, g.data(), 1e-5f, b.data(), rb.data());
    EXPECT_LT(max_abs_diff(a, b), 1e-5);
    EXPECT_LT(max_abs_diff(ra, rb), 1e-5);
    // closed form for row 0: rstd = 1/sqrt(mean x^2 + eps)
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += double(x[i]) * x[i];
    EXPECT_NEAR(ra[0], 1.0 / std::sqrt(ss / d + 1e-5), 1e-5);
  }
}

TEST(Ops, RopeFastMatchesReferenceBothModesAndFactors) {
  const int64_t n = 5, H = 3, hd = 10;
  std::vector<float> factors = {1, 1, 2, 4, 8};
  for (bool neox : {false, true}) {
    for (const float* ff : {(const float*)nullptr, (const float*)factors.data()}) {
      RopeParams p{hd, 10000.0f, 1.0f, neox, ff};
      const std::vector<int32_t> pos = {0, 1, 7, 100, 511};
      auto a = randn(n * H * hd, 9), b = a;
      reference_ops().rope(a.data(), n, H, hd, pos.data(), p);
      cpu_ops().rope(b.data(), n, H, hd, pos.data(), p);
      EXPECT_LT(max_abs_diff(a, b), 1e-4);
    }
  }
  // position 0 is the identity; norms of each rotated pair are preserved
  RopeParams p{4, 10000.0f, 1.0f, false, nullptr};
  std::vector<float> v = {1, 2, 3, 4};
  const int32_t p0 = 0, p1 = 3;
  auto w = v;
  reference_ops().rope(w.data(), 1, 1, 4, &p0, p);
  EXPECT_EQ(w, v);
  reference_ops().rope(w.data(), 1, 1, 4, &p1, p);
  EXPECT_NEAR(w[0] * w[0] + w[1] * w[1], 5.0, 1e-5);
  EXPECT_NEAR(std::remainder(std::atan2(w[1], w[0]) - std::atan2(2.0, 1.0) - 3.0, 2 * M_PI), 0.0, 1e-5);
}

TEST(Ops, AttentionFastMatchesReferenceGqaCausal) {
  const int64_t H = 4, Hkv = 2, hd = 9, n = 6, past = 5, nkv = past + n;
  const auto q = randn(n * H * hd, 1), k = randn(nkv * Hkv * hd, 2), v = randn(nkv * Hkv * hd, 3);
  std::vector<int32_t> pos(n);
  for (int64_t i = 0; i < n; ++i) pos[i] = int32_t(past + i);
  std::vector<float> oa(n * H * hd), ob(n * H * hd), pa(H * n * nkv), pb(H * n * nkv);
  AttentionArgs a{n, nkv, H, Hkv, hd, q.data(), k.data(), v.data(), pos.data(), 0.33f, oa.data(), pa.data()};
  reference_ops().attention(a);
  a.out = ob.data();
  a.probs = pb.data();
  cpu_ops().attention(a);
  EXPECT_LT(max_abs_diff(oa, ob), 1e-5);
  EXPECT_LT(max_abs_diff(pa, pb), 1e-6);
  // causality: token 0 (position 5) gives zero weight to keys 6..10; rows sum to 1
  for (int64_t j = past + 1; j < nkv; ++j) EXPECT_EQ(pa[j], 0.0f);
  double s = 0;
  for (int64_t j = 0; j < nkv; ++j) s += pa[j];
  EXPECT_NEAR(s, 1.0, 1e-6);
  // a single visible key: the output is that key's value row
  const int32_t p0 = 0;
  AttentionArgs one{1, 1, H, Hkv, hd, q.data(), k.data(), v.data(), &p0, 1.0f, oa.data(), nullptr};
  reference_ops().attention(one);
  for (int64_t i = 0; i < hd; ++i) EXPECT_NEAR(oa[(H - 1) * hd + i], v[(Hkv - 1) * hd + i], 1e-6);
}

TEST(Ops, SwigluSoftmaxAddFastMatchReference) {
  const int64_t n = 1001;
  const auto g = randn(n, 1, 3.0f), u = randn(n, 2);
  std::vector<float> a(n), b(n);
  reference_ops().swiglu(g.data(), u.data(), n, a.data());
  cpu_ops().swiglu(g.data(), u.data(), n, b.data());
  EXPECT_LT(max_abs_diff(a, b), 1e-6);
  EXPECT_NEAR(a[0], g[0] / (1 + std::exp(-g[0])) * u[0], 1e-6);
  auto s1 = randn(3 * 77, 4, 5.0f), s2 = s1;
  reference_ops().softmax(s1.data(), 3, 77);
  cpu_ops().softmax(s2.data(), 3, 77);
  EXPECT_LT(max_abs_diff(s1, s2), 1e-6);
  reference_ops().add(g.data(), u.data(), n, a.data());
  cpu_ops().add(g.data(), u.data(), n, b.data());
  EXPECT_EQ(a, b);
}

TEST(Ops, MatmulIndependentOfThreadCount) {
  WeightView w;
  auto keep = make_weight(GgmlType::Q4_K, 300, 512, 11, &w);
  const auto x = randn(20 * 512, 12);
  std::vector<float> y1(20 * 300), y2(20 * 300);
  set_num_threads(1);
  cpu_ops().matmul(x.data(), 20, w, nullptr, y1.data());
  set_num_threads(2);
  cpu_ops().matmul(x.data(), 20, w, nullptr, y2.data());
  EXPECT_EQ(y1, y2);
  set_num_threads(0);
}
