// Seeded random test data shared by the test suites.
#pragma once
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace samq::test {

// n draws of N(0, sd^2) from std::mt19937(seed), in order.
inline std::vector<float> randn(size_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// n more draws of N(0, sd^2) from a generator the caller keeps using.
inline std::vector<float> randn(size_t n, std::mt19937& g, float sd) {
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

}  // namespace samq::test
