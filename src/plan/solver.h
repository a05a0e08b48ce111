// Exact multiple-choice knapsack: pick one choice per item (a type per tensor) minimizing the
// summed cost (predicted Δloss) with the summed bytes never above the capacity.
//
// Method: dynamic programming over bytes. Every choice's extra bytes above its item's cheapest
// choice are rounded UP to a granule g (a multiple of the 32-byte GGUF alignment), so a DP
// solution that fits in floor(capacity/g) granules provably fits in the capacity in exact
// bytes. g depends only on the item set (never on the capacity), which makes the optimum
// monotone in the budget. When every extra-byte count is a multiple of g (g = 32 for models up
// to a few hundred MB) the DP is exact; otherwise it is exact for the rounded problem and a
// deterministic repair pass then spends the leftover exact bytes on the best single upgrades.
// Memory: one byte of back-pointer per (item, granule); the granule count is capped so this
// stays below ~256 MB whatever the model size.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

namespace samq::plan {

struct Choice {
  int64_t bytes = 0;  // exact bytes this choice costs (already padded as stored)
  double cost = 0;    // predicted Δloss
};

struct Item {
  std::vector<Choice> choices;  // at most 255
};

struct Solution {
  std::vector<int> pick;  // choice index per item
  int64_t bytes = 0;
  double cost = 0;
};

struct SolverStats {
  int64_t granule = 0;  // bytes per DP cell
  int64_t cells = 0;    // DP width
};

// Smallest / largest total bytes over all selections.
int64_t min_total_bytes(const std::vector<Item>& items);
int64_t max_total_bytes(const std::vector<Item>& items);

// Minimum-cost selection within `capacity` bytes; nullopt when even the cheapest selection
// does not fit. Deterministic (ties go to the smaller bytes, then the lower index).
std::optional<Solution> solve_budget(const std::vector<Item>& items, int64_t capacity,
                                     SolverStats* stats = nullptr);

// Smallest-bytes selection whose cost stays at or below `max_cost` (to the DP's granule);
// nullopt when no selection reaches it.
std::optional<Solution> solve_max_cost(const std::vector<Item>& items, double max_cost,
                                       SolverStats* stats = nullptr);

}  // namespace samq::plan
