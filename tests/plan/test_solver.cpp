// The knapsack solver against brute force on small problems: optimal, never over budget,
// monotone in the budget, deterministic; max-cost mode returns the smallest selection.
#include <gtest/gtest.h>

#include <limits>
#include <random>

#include "plan/solver.h"

using namespace samq::plan;

namespace {

std::vector<Item> random_items(std::mt19937& rng, int n, int k, bool aligned) {
  std::uniform_int_distribution<int> nb(1, 200);
  std::uniform_real_distribution<double> cost(0.0, 1.0);
  std::vector<Item> items(n);
  for (auto& it : items) {
    const int kk = 1 + int(rng() % k);
    int64_t b = 0;
    double c = 2.0 + cost(rng);
    for (int j = 0; j < kk; ++j) {
      b += aligned ? 32 * nb(rng) : 17 + nb(rng) * 7;
      c *= cost(rng);  // usually decreasing with size, sometimes not (noise is fine)
      it.choices.push_back({b, (rng() % 5 == 0) ? c + cost(rng) : c});
    }
  }
  return items;
}

// Exhaustive search: min cost within capacity; ties to fewer bytes.
std::pair<double, int64_t> brute(const std::vector<Item>& items, int64_t cap) {
  double best = std::numeric_limits<double>::infinity();
  int64_t best_b = -1;
  std::vector<int> pick(items.size(), 0);
  for (;;) {
    int64_t b = 0;
    double c = 0;
    for (size_t i = 0; i < items.size(); ++i) b += items[i].choices[pick[i]].bytes, c += items[i].choices[pick[i]].cost;
    if (b <= cap && (c < best - 1e-12 || (std::abs(c - best) <= 1e-12 && b < best_b))) best = c, best_b = b;
    size_t i = 0;
    while (i < items.size() && ++pick[i] == int(items[i].choices.size())) pick[i++] = 0;
    if (i == items.size()) break;
  }
  return {best, best_b};
}

// One random instance of 1 + trial % 6 items under a random cap: the solver's cost (which must
// exist and fit the cap) and brute force's optimum.
void solve_random(std::mt19937& rng, int trial, bool aligned, double* cost, double* brute_cost) {
  auto items = random_items(rng, 1 + trial % 6, 4, aligned);
  const int64_t lo = min_total_bytes(items), hi = max_total_bytes(items);
  const int64_t cap = lo + int64_t(rng() % uint32_t(hi - lo + 64));
  auto s = solve_budget(items, cap);
  *brute_cost = brute(items, cap).first;
  ASSERT_TRUE(s.has_value());
  EXPECT_LE(s->bytes, cap);
  *cost = s->cost;
}

}  // namespace

TEST(Solver, MatchesBruteForceOnAlignedSizes) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    double cost, bc;
    ASSERT_NO_FATAL_FAILURE(solve_random(rng, trial, true, &cost, &bc));
    EXPECT_NEAR(cost, bc, 1e-12) << "trial " << trial;
  }
}

TEST(Solver, NeverOverBudgetAndNearOptimalOnOddSizes) {
  // Sizes not multiples of 32: the DP works on rounded sizes, the repair spends the rest.
  std::mt19937 rng(11);
  int exact = 0, total = 0;
  for (int trial = 0; trial < 200; ++trial) {
    double cost, bc;
    ASSERT_NO_FATAL_FAILURE(solve_random(rng, trial, false, &cost, &bc));
    EXPECT_GE(cost, bc - 1e-12);  // brute force is a lower bound
    total++;
    exact += std::abs(cost - bc) <= 1e-12;
  }
  EXPECT_GE(exact, total * 9 / 10);
}

TEST(Solver, InfeasibleBudget) {
  std::vector<Item> items = {{{{64, 1.0}, {128, 0.5}}}, {{{32, 1.0}}}};
  EXPECT_FALSE(solve_budget(items, 95).has_value());
  EXPECT_TRUE(solve_budget(items, 96).has_value());
  EXPECT_EQ(min_total_bytes(items), 96);
  EXPECT_EQ(max_total_bytes(items), 160);
}

TEST(Solver, MonotoneInBudgetAndDeterministic) {
  std::mt19937 rng(3);
  auto items = random_items(rng, 40, 8, true);
  const int64_t lo = min_total_bytes(items), hi = max_total_bytes(items);
  double prev = std::numeric_limits<double>::infinity();
  for (int64_t cap = lo; cap <= hi + 32; cap += (hi - lo) / 97 + 1) {
    auto a = solve_budget(items, cap);
    auto b = solve_budget(items, cap);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->pick, b->pick);
    EXPECT_LE(a->bytes, cap);
    EXPECT_LE(a->cost, prev + 1e-12);
    prev = a->cost;
  }
}

TEST(Solver, MaxCostGivesSmallestSelection) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 100; ++trial) {
    auto items = random_items(rng, 1 + trial % 5, 4, true);
    // Pick a reachable bound from a random selection.
    double bound = 0;
    for (auto& it : items) bound += it.choices[rng() % it.choices.size()].cost;
    auto s = solve_max_cost(items, bound);
    ASSERT_TRUE(s.has_value());
    EXPECT_LE(s->cost, bound + 1e-12);
    // No selection with fewer bytes reaches the bound (brute force).
    if (s->bytes > min_total_bytes(items)) {
      auto [bc, bb] = brute(items, s->bytes - 1);
      EXPECT_GT(bc, bound) << "trial " << trial;
    }
  }
  std::vector<Item> items = {{{{32, 1.0}, {64, 0.5}}}};
  EXPECT_FALSE(solve_max_cost(items, 0.1).has_value());
}
