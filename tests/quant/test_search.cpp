// Search helpers against brute force / an independent formulation.
#include <gtest/gtest.h>

#include <cmath>
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
