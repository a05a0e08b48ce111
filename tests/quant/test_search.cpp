// Search helpers against brute force / an independent formulation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "quant/blocks.h"
#include "quant/search.h"

using namespace samq;
using namespace samq::quant_detail;

namespace {
// ggml-formats.md §3.3: <= first -> 0, >= last -> 15, else binary search for the bracketing
// pair and take the nearer one, an exact tie taking the upper.
int binary_search_index(const int8_t* val, float x) {
  if (x <= val[0]) return 0;
  if (x >= val[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (x < val[mid]) hi = mid;
    else lo = mid;
  }
  return x - val[hi - 1] < val[hi] - x ? hi - 1 : hi;
}
}  // namespace

TEST(Search, NearestIntIsRoundHalfEven) {
  for (float v : {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 3.49999f, -7.5f, 1000.5f, 4194303.f, -4194303.f})
    EXPECT_EQ(nearest_int(v), int(std::nearbyint(v))) << v;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-5000.f, 5000.f);
  for (int i = 0; i < 100000; ++i) {
    const float v = u(rng);
    ASSERT_EQ(nearest_int(v), int(std::nearbyint(v))) << v;
  }
}

TEST(Search, BestIndexMatchesTheBinarySearch) {
  std::vector<float> xs = {-1e9f, -128.f, -127.f, -126.9f, 0.f, -0.f, 113.f, 1e9f,
                           std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  for (int j = 0; j + 1 < 16; ++j) {  // exact midpoints and their neighbours
    const float m = 0.5f * (kvalues_iq4nl[j] + kvalues_iq4nl[j + 1]);
    xs.insert(xs.end(), {m, std::nextafter(m, -1e9f), std::nextafter(m, 1e9f), float(kvalues_iq4nl[j])});
  }
  std::mt19937 rng(6);
  std::uniform_real_distribution<float> u(-140.f, 130.f);
  for (int i = 0; i < 200000; ++i) xs.push_back(u(rng));
  for (float x : xs) ASSERT_EQ(best_index_int8(16, kvalues_iq4nl, x), binary_search_index(kvalues_iq4nl, x)) << x;
  EXPECT_EQ(best_index_int8(16, kvalues_iq4nl, std::nanf("")), binary_search_index(kvalues_iq4nl, std::nanf("")));
}

TEST(Search, AffineSearchNeverWorseThanPlainRounding) {
  // make_qkx2_quants keeps the initial min/max rounding unless a candidate is strictly better.
  std::mt19937 rng(8);
  std::normal_distribution<float> g(0.f, 1.f);
  for (int it = 0; it < 200; ++it) {
    float x[32], w[32];
    for (int i = 0; i < 32; ++i) {
      x[i] = g(rng);
      w[i] = std::fabs(x[i]) + 0.1f;
    }
    uint8_t L[32], Laux[32];
    float the_min;
    const float s = make_qkx2_quants(32, 15, x, w, L, &the_min, Laux, -1.f, 0.1f, 20, false);
    double err = 0, err0 = 0;
    float mn = 0, mx = x[0];
    for (float v : x) mn = std::min(mn, v), mx = std::max(mx, v);
    const float is = 15 / (mx - mn);
    for (int i = 0; i < 32; ++i) {
      err += w[i] * std::pow(double(s) * L[i] - the_min - x[i], 2);
      const int l0 = std::clamp(nearest_int(is * (x[i] - mn)), 0, 15);
      err0 += w[i] * std::pow(double(l0) / is + mn - x[i], 2);
    }
    EXPECT_LE(err, err0 * (1 + 1e-5)) << it;
  }
}

TEST(Search, EightLaneAffineSearchEqualsScalar) {
  // Lanes include degenerate groups (constant, all zero, all negative, all positive).
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0.f, 1.f);
  int compared = 0;
  for (int it = 0; it < 300; ++it) {
    const int n = it % 2 ? 32 : 16;
    const int nmax = it % 3 == 0 ? 3 : it % 3 == 1 ? 15 : 31;
    const bool mad = it % 5 == 0;
    float x[256], w[256];
    for (int k = 0; k < 8; ++k)
      for (int i = 0; i < n; ++i) {
        float v = g(rng);
        switch ((it + k) % 9) {
          case 0: v = 0.25f; break;
          case 1: v = 0.f; break;
          case 2: v = -std::fabs(v); break;
          case 3: v = std::fabs(v) + 1.f; break;
          case 4: v = std::round(v * 2.f); break;
          default: break;
        }
        x[k * n + i] = v;
        w[k * n + i] = std::fabs(g(rng)) + 0.01f;
      }
    uint8_t L1[256], L2[256], Laux[32];
    float s1[8], m1[8], s2[8], m2[8];
    const float rmin = it % 2 ? -0.9f : -0.5f, rdelta = it % 2 ? 0.05f : 0.1f;
    const int nstep = it % 2 ? 36 : 15;
    for (int k = 0; k < 8; ++k)
      s1[k] = make_qkx2_quants(n, nmax, x + k * n, w + k * n, L1 + k * n, &m1[k], Laux, rmin, rdelta, nstep, mad);
    if (!affine_search_x8(n, nmax, x, w, L2, s2, m2, rmin, rdelta, nstep, mad)) GTEST_SKIP() << "no AVX2";
    for (int k = 0; k < 8; ++k) {
      ASSERT_EQ(std::memcmp(&s1[k], &s2[k], 4), 0) << "it " << it << " lane " << k;
      ASSERT_EQ(std::memcmp(&m1[k], &m2[k], 4), 0) << "it " << it << " lane " << k;
      ASSERT_EQ(std::memcmp(L1 + k * n, L2 + k * n, size_t(n)), 0) << "it " << it << " lane " << k;
      ++compared;
    }
  }
  EXPECT_EQ(compared, 2400);
}

TEST(Search, EightLaneSymmetricSearchEqualsScalar) {
  std::mt19937 rng(10);
  std::normal_distribution<float> g(0.f, 1.f);
  for (int it = 0; it < 300; ++it) {
    const int n = it % 2 ? 32 : 16;
    const int nmax = it % 3 == 0 ? 4 : it % 3 == 1 ? 8 : 32;
    const bool weighted = it % 4 != 0;
    float x[256], w[256];
    for (int k = 0; k < 8; ++k)
      for (int i = 0; i < n; ++i) {
        float v = g(rng);
        switch ((it + k) % 7) {
          case 0: v = 0.f; break;
          case 1: v = 1e-20f * v; break;  // below the all-zero threshold
          case 2: v = std::round(v * 3.f); break;
          default: break;
        }
        x[k * n + i] = v;
        w[k * n + i] = std::fabs(g(rng)) + 0.01f;
      }
    int8_t L1[256], L2[256];
    float s1[8], s2[8];
    for (int k = 0; k < 8; ++k) s1[k] = make_qx_quants(n, nmax, x + k * n, L1 + k * n, 1, weighted ? w + k * n : nullptr);
    if (!symmetric_search_x8(n, nmax, x, weighted ? w : nullptr, L2, s2)) GTEST_SKIP() << "no AVX2";
    for (int k = 0; k < 8; ++k) {
      ASSERT_EQ(std::memcmp(&s1[k], &s2[k], 4), 0) << "it " << it << " lane " << k;
      ASSERT_EQ(std::memcmp(L1 + k * n, L2 + k * n, size_t(n)), 0) << "it " << it << " lane " << k;
    }
  }
}

TEST(Search, EightLaneIq4ScaleSearchEqualsScalar) {
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0.f, 1.f);
  for (int it = 0; it < 300; ++it) {
    float x[256], w[256];
    for (int k = 0; k < 8; ++k)
      for (int i = 0; i < 32; ++i) {
        float v = g(rng);
        switch ((it + k) % 6) {
          case 0: v = 0.f; break;
          case 1: v = std::round(v * 4.f) * 0.25f; break;  // exact codebook midpoints happen
          case 2: v = std::fabs(v) * 1e3f; break;
          default: break;
        }
        x[32 * k + i] = v;
        w[32 * k + i] = it % 2 ? std::fabs(g(rng)) + 0.01f : v * v;
      }
    float s2[8];
    if (!iq4_scale_search_x8(x, w, s2)) GTEST_SKIP() << "no AVX2";
    for (int k = 0; k < 8; ++k) {
      const float s1 = iq4_block_scale(x + 32 * k, w + 32 * k);
      ASSERT_EQ(std::memcmp(&s1, &s2[k], 4), 0) << "it " << it << " lane " << k << ": " << s1 << " vs " << s2[k];
    }
  }
}
