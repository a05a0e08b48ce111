// The AVX2 dequantizers against the scalar reference on random blocks (every bit pattern of
// codes and scales, fp16 scales including subnormals, Inf and NaN): identical floats.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "quant/dequant_fast.h"
#include "quant/quantize.h"
#include "quant/quants_ref.h"

using namespace samq;

TEST(DequantSimd, MatchesScalarOnRandomBlocks) {
  if (!dequant_simd_enabled()) GTEST_SKIP() << "no AVX2 on this CPU: only the scalar path runs";
  std::mt19937 rng(99);
  const int64_t n = 256 * 64;
  for (GgmlType t : {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
                     GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                     GgmlType::IQ4_NL, GgmlType::IQ4_XS}) {
    std::vector<uint8_t> q(static_cast<size_t>(ggml_row_size(t, n)));
    for (auto& b : q) b = uint8_t(rng());
    std::vector<float> a(n), b(n);
    dequantize_row_ref(t, q.data(), a.data(), n);
    dequantize_row(t, q.data(), b.data(), n);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i)
      if (std::memcmp(&a[i], &b[i], 4) != 0 && !(std::isnan(a[i]) && std::isnan(b[i]))) ++bad;
    EXPECT_EQ(bad, 0) << ggml_type_name(t);
  }
}

TEST(DequantSimd, CanBeSwitchedOff) {
  const bool was = dequant_simd_enabled();
  set_dequant_simd(false);
  EXPECT_FALSE(dequant_simd_enabled());
  float y[256];
  std::vector<uint8_t> q(static_cast<size_t>(ggml_row_size(GgmlType::Q4_K, 256)), 0);
  EXPECT_FALSE(dequantize_row_fast(GgmlType::Q4_K, q.data(), y, 256));
  set_dequant_simd(true);
  EXPECT_EQ(dequant_simd_enabled(), was);
}

TEST(DequantSimd, F16ConversionsMatchScalarOnEveryPattern) {
  // All 65536 fp16 bit patterns widen like core/fp16.h (NaNs included, bit for bit).
  std::vector<uint16_t> h(65536);
  for (int i = 0; i < 65536; ++i) h[size_t(i)] = uint16_t(i);
  std::vector<float> a(65536), b(65536);
  for (int i = 0; i < 65536; ++i) a[size_t(i)] = fp16_to_f32(h[size_t(i)]);
  dequantize_row(GgmlType::F16, h.data(), b.data(), 65536);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
  // Narrowing: random finite floats over the whole range, near fp16 limits and ties.
  std::mt19937 rng(3);
  std::vector<float> x;
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = uint32_t(rng());
    if ((u & 0x7f800000u) == 0x7f800000u) u &= ~0x00800000u;  // finite only
    float f;
    std::memcpy(&f, &u, 4);
    x.push_back(f);
  }
  for (uint32_t u = 0x33000000u; u < 0x38800000u; u += 0x1000u) {  // subnormal fp16 range
    float f;
    std::memcpy(&f, &u, 4);
    x.push_back(f);
  }
  for (float f : {65504.f, 65519.f, 65520.f, 65536.f, -65520.f, 5.96046448e-8f, 2.98023224e-8f}) x.push_back(f);
  std::vector<uint16_t> y1(x.size()), y2(x.size());
  for (size_t i = 0; i < x.size(); ++i) y1[i] = f32_to_fp16(x[i]);
  quantize_row(GgmlType::F16, x.data(), y2.data(), int64_t(x.size()), nullptr);
  EXPECT_EQ(std::memcmp(y1.data(), y2.data(), y1.size() * 2), 0);
}

TEST(DequantSimd, Q8_0FastQuantizerMatchesScalar) {
  // Rows built to hit roundf's ties (x * id landing on k + 0.5) and near-ties, plus random data.
  std::mt19937 rng(4);
  std::normal_distribution<float> g(0.f, 1.f);
  const int64_t n = 32 * 512;
  std::vector<float> x(n);
  for (int64_t b = 0; b < n / 32; ++b) {
    const float scale = std::ldexp(1.f, int(b % 40) - 20);
    for (int j = 0; j < 32; ++j) {
      float v;
      switch (b % 4) {
        case 0: v = (float(int(rng() % 255) - 127) + 0.5f) * scale; break;  // halves
        case 1: v = std::nextafter((float(int(rng() % 255) - 127) + 0.5f) * scale, 0.f); break;
        case 2: v = g(rng) * scale; break;
        default: v = std::round(g(rng) * 40.f) * 0.5f * scale; break;
      }
      // A 127*scale anchor makes d = scale and id = 1/scale exact, so the halves are exact ties.
      if (j == 0 && b % 4 != 2) v = (b % 8 < 4 ? 127.f : -127.f) * scale;
      x[size_t(b * 32 + j)] = v;
    }
  }
  std::vector<block_q8_0> a(n / 32), b(n / 32);
  quantize_row_q8_0_ref(x.data(), a.data(), n);
  if (!quantize_row_q8_0_fast(x.data(), b.data(), n)) GTEST_SKIP() << "no AVX2";
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(block_q8_0)), 0);
}
