// Sampler against an independent brute-force computation of the target distribution, and
// empirical frequencies against it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "serve/sampler.h"

using namespace samq::serve;

namespace {
// Brute force: keep tokens ranked < top_k (ties by id), softmax at temperature, then the
// smallest prefix (by probability) reaching top_p.
std::map<int, double> brute(const std::vector<float>& l, float temp, int top_k, float top_p) {
  std::vector<int> ids(l.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::vector<int> kept;
  for (int i : ids) {
    int rank = 0;
    for (int j : ids) rank += (l[j] > l[i]) || (l[j] == l[i] && j < i);
    if (top_k <= 0 || rank < top_k) kept.push_back(i);
  }
  double z = 0;
  for (int i : kept) z += std::exp(double(l[i]) / temp);
  std::vector<std::pair<double, int>> p;
  for (int i : kept) p.push_back({std::exp(double(l[i]) / temp) / z, i});
  std::sort(p.begin(), p.end(), [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  std::map<int, double> out;
  double cum = 0;
  for (auto& [pr, i] : p) {
    out[i] = pr;
    cum += pr;
    if (top_p < 1 && cum >= top_p) break;
  }
  double s = 0;
  for (auto& [i, pr] : out) s += pr;
  for (auto& [i, pr] : out) pr /= s;
  return out;
}
}  // namespace

TEST(Sampler, GreedyIsArgmax) {
  std::vector<float> l = {0.1f, 3.0f, -1.0f, 2.9f};
  Sampler s({0.0f, 1.0f, 0, 1});
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(l), 1);
}

TEST(Sampler, DistributionMatchesBruteForce) {
  std::vector<float> l = {1.0f, 2.5f, 0.3f, 2.5f, -1.0f, 0.9f, 1.7f, 3.1f};
  struct Case { float t; int k; float p; };
  for (Case c : {Case{1.0f, 0, 1.0f}, Case{0.7f, 3, 1.0f}, Case{1.3f, 0, 0.8f}, Case{0.5f, 5, 0.6f}, Case{2.0f, 1, 1.0f}}) {
    Sampler s({c.t, c.p, c.k, 7});
    auto d = s.distribution(l);
    auto ref = brute(l, c.t, c.k, c.p);
    ASSERT_EQ(d.size(), ref.size()) << "t=" << c.t << " k=" << c.k << " p=" << c.p;
    for (auto& [i, p] : d) EXPECT_NEAR(p, ref.at(i), 1e-9);
  }
}

TEST(Sampler, FrequenciesFollowDistributionAndSeedRepeats) {
  std::vector<float> l = {0.0f, 1.0f, 2.0f, 0.5f};
  SamplingParams sp{0.9f, 0.95f, 0, 42};
  Sampler a(sp), b(sp);
  auto ref = brute(l, 0.9f, 0, 0.95f);
  std::map<int, int> count;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    int x = a.sample(l);
    EXPECT_EQ(x, b.sample(l));
    count[x]++;
  }
  for (auto& [i, c] : count) ASSERT_TRUE(ref.count(i)) << "sampled a token outside top-p: " << i;
  for (auto& [i, p] : ref) EXPECT_NEAR(double(count[i]) / n, p, 4 * std::sqrt(p * (1 - p) / n) + 1e-3) << i;
}

// The whole-vocabulary path (top_p 1, no top_k: the API default) draws without building the
// distribution; its frequencies must still follow the brute-force softmax, and seeds repeat.
TEST(Sampler, WholeVocabularyFastPathFollowsSoftmax) {
  std::vector<float> l = {0.3f, -1.0f, 2.2f, 1.9f, 0.0f, -0.4f};
  for (int top_k : {0, 6, 100}) {
    SamplingParams sp{0.8f, 1.0f, top_k, 7};
    Sampler a(sp), b(sp);
    auto ref = brute(l, 0.8f, 0, 1.0f);
    std::map<int, int> count;
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
      int x = a.sample(l);
      ASSERT_EQ(x, b.sample(l));
      count[x]++;
    }
    for (auto& [i, p] : ref)
      EXPECT_NEAR(double(count[i]) / n, p, 4 * std::sqrt(p * (1 - p) / n) + 1e-3) << "token " << i << " top_k " << top_k;
  }
}
