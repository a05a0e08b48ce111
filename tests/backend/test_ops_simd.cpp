// simd.h's vector exp, max, silu and scale/add kernels at every instruction-set level against
// std::exp and plain loops (relative error bound in ulps; special values).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "backend/cpu/simd.h"

using namespace samq;

namespace {
const char* kLevels[] = {"scalar", "avx2", "avx512"};
void restore_best() { cpu::force_simd_level("avx512") || cpu::force_simd_level("avx2"); }
}  // namespace

TEST(OpsSimd, ExpSubSumWithinThreeUlpAndSpecialValues) {
  std::vector<float> x;
  for (float v = -120.0f; v <= 95.0f; v += 0.0137f) x.push_back(v);
  for (const char* lvl : kLevels) {
    if (!cpu::force_simd_level(lvl)) continue;
    for (float m : {0.0f, 3.5f}) {
      auto y = x;
      cpu::exp_sub_sum(y.data(), int64_t(y.size()), m);
      for (size_t i = 0; i < x.size(); ++i) {
        const float ref = std::exp(x[i] - m);
        if (ref == 0.0f || std::isinf(ref)) {
          EXPECT_EQ(y[i], ref) << lvl << " x=" << x[i];
        } else if (ref >= std::numeric_limits<float>::min()) {  // normal results: relative bound
          EXPECT_LE(std::fabs(y[i] - ref), 3.0f * std::fabs(ref) * std::numeric_limits<float>::epsilon())
              << lvl << " x=" << x[i];
        } else {  // subnormal results: absolute bound of a few subnormal steps
          EXPECT_LE(std::fabs(y[i] - ref), 4 * std::numeric_limits<float>::denorm_min()) << lvl << " x=" << x[i];
        }
      }
    }
    // the returned sum (softmax scores: values <= 0 after subtracting the max)
    std::vector<float> sc(203);
    for (size_t i = 0; i < sc.size(); ++i) sc[i] = -0.05f * float(i);
    double ref_sum = 0;
    for (float v : sc) ref_sum += std::exp(double(v) - 0.5);
    EXPECT_NEAR(cpu::exp_sub_sum(sc.data(), int64_t(sc.size()), 0.5f), ref_sum, 1e-6 * ref_sum) << lvl;
    // NaN stays NaN, -inf gives 0, odd lengths use the tail path
    std::vector<float> sp = {std::nanf(""), -INFINITY, 0.0f, 1.0f, -1.0f};
    cpu::exp_sub_sum(sp.data(), 5, 0.0f);
    EXPECT_TRUE(std::isnan(sp[0])) << lvl;
    EXPECT_EQ(sp[1], 0.0f) << lvl;
    EXPECT_EQ(sp[2], 1.0f) << lvl;
    EXPECT_NEAR(sp[3], std::exp(1.0f), 3e-7f * std::exp(1.0f)) << lvl;
  }
  restore_best();
}

TEST(OpsSimd, MaxSiluScaleAddMatchPlainLoops) {
  std::mt19937 g(3);
  std::normal_distribution<float> d(0.0f, 4.0f);
  for (const char* lvl : kLevels) {
    if (!cpu::force_simd_level(lvl)) continue;
    for (int64_t n : {1, 5, 16, 17, 100, 1031}) {
      std::vector<float> a(n), b(n), w(n);
      for (int64_t i = 0; i < n; ++i) a[i] = d(g), b[i] = d(g), w[i] = d(g);
      float mx = a[0];
      for (float v : a) mx = std::max(mx, v);
      EXPECT_EQ(cpu::max_f32(a.data(), n), mx) << lvl << " n=" << n;
      std::vector<float> y(n), z(n), s(n);
      cpu::silu_mul(a.data(), b.data(), y.data(), n);
      cpu::scale_mul(a.data(), 0.37f, w.data(), z.data(), n);
      cpu::add_f32(a.data(), b.data(), s.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double silu = double(a[i]) / (1.0 + std::exp(-double(a[i]))) * b[i];
        EXPECT_NEAR(y[i], silu, 1e-6 * (1 + std::fabs(silu))) << lvl << " i=" << i;
        EXPECT_EQ(z[i], a[i] * 0.37f * w[i]) << lvl;  // same rounding as the scalar expression
        EXPECT_EQ(s[i], a[i] + b[i]) << lvl;
      }
    }
  }
  restore_best();
}
