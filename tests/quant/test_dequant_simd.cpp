// The AVX2 dequantizers against the scalar reference on random blocks (every bit pattern of
// codes and scales, fp16 scales including subnormals, Inf and NaN): identical floats.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

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
