// fp16/bf16 conversions against independent definitions: exact widening checked through
// double arithmetic, and narrowing checked as "nearest representable, ties to even" by
// brute force over neighbouring codes.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/fp16.h"

using namespace samq;

static double fp16_value(uint16_t h) {
  int e = (h >> 10) & 31, m = h & 1023;
  double s = (h & 0x8000) ? -1 : 1;
  if (e == 0) return s * std::ldexp(m, -24);
  if (e == 31) return m ? NAN : s * INFINITY;
  return s * std::ldexp(1024 + m, e - 25);
}

TEST(Fp16, WidenIsExactForEveryCode) {
  for (uint32_t h = 0; h < 65536; ++h) {
    double want = fp16_value(uint16_t(h));
    float got = fp16_to_f32(uint16_t(h));
    if (std::isnan(want)) EXPECT_TRUE(std::isnan(got)) << h;
    else EXPECT_EQ(double(got), want) << h;
  }
}

TEST(Fp16, NarrowRoundsToNearestEven) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    float f = bits_to_f32(bits(rng));
    if (std::isnan(f)) { EXPECT_EQ(f32_to_fp16(f) & 0x7fff, 0x7e00); continue; }
    if (std::fabs(f) > 1e5f) f = std::ldexp(f, -std::ilogb(f) + (i % 40) - 26);
    uint16_t h = f32_to_fp16(f);
    double got = fp16_value(h);
    if (std::fabs(double(f)) >= 65520.0) { EXPECT_TRUE(std::isinf(got)) << f; continue; }
    // no other finite fp16 is strictly closer
    for (int d = -1; d <= 1; d += 2) {
      uint16_t nb = uint16_t(h + d);
      if ((nb & 0x7c00) == 0x7c00 || ((h & 0x7fff) == 0 && d < 0)) continue;
      double alt = fp16_value(nb);
      double eg = std::fabs(got - f), ea = std::fabs(alt - f);
      EXPECT_TRUE(eg < ea || (eg == ea && (h & 1) == 0)) << f << " got " << got << " alt " << alt;
    }
  }
}

TEST(Bf16, RoundsAndQuietsNan) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f808000)), 0x3f80);  // tie -> even
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f818000)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f808001)), 0x3f81);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x7f800001)), 0x7fc0);
  EXPECT_EQ(bf16_to_f32(0xc000), -2.0f);
}
