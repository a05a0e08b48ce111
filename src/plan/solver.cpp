#include "plan/solver.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace samq::plan {
namespace {

constexpr int64_t kAlign = 32;
constexpr int64_t kMaxCells = 1'000'000;
constexpr int64_t kMaxTableBytes = 256LL << 20;

struct Table {
  int64_t g = kAlign, cells = 0;          // cells = number of capacity points (0..cells-1)
  std::vector<int64_t> base;              // cheapest bytes per item
  std::vector<std::vector<int64_t>> w;    // rounded extra granules per choice
  std::vector<double> dp;                 // dp[c]: min cost with <= c granules of extra bytes
  std::vector<uint8_t> back;              // back[i*cells + c]: choice of item i
};

void check_items(const std::vector<Item>& items) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].choices.empty()) fail("planner: tensor #{} has no candidate type", i);
    if (items[i].choices.size() > 255) fail("planner: tensor #{} has more than 255 candidates", i);
    for (const auto& c : items[i].choices)
      if (c.bytes < 0 || !(c.cost == c.cost)) fail("planner: tensor #{} has a negative size or NaN cost", i);
  }
}

// Chooses g from the item set alone: the whole range of extra bytes in at most the cap of cells.
int64_t choose_granule(const std::vector<Item>& items) {
  int64_t range = 0;
  for (const auto& it : items) {
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
    for (const auto& c : it.choices) lo = std::min(lo, c.bytes), hi = std::max(hi, c.bytes);
    range += hi - lo;
  }
  const int64_t n = std::max<int64_t>(1, int64_t(items.size()));
  const int64_t max_cells = std::max<int64_t>(1024, std::min(kMaxCells, kMaxTableBytes / n));
  // The gcd of all extra-byte counts keeps the DP exact with the fewest cells (for
  // refcode-32m it is a few hundred bytes); otherwise fall back to a power-of-two multiple of
  // the alignment that fits the cap.
  int64_t gcd = 0;
  for (const auto& it : items) {
    int64_t lo = std::numeric_limits<int64_t>::max();
    for (const auto& c : it.choices) lo = std::min(lo, c.bytes);
    for (const auto& c : it.choices) gcd = std::gcd(gcd, c.bytes - lo);
  }
  if (gcd >= kAlign && gcd % kAlign == 0 && range / gcd + 1 <= max_cells) return gcd;
  int64_t g = kAlign;
  while (range / g + 1 > max_cells) g *= 2;
  return g;
}

// Fills the DP for capacities 0..cells-1 granules of extra bytes.
Table run_dp(const std::vector<Item>& items, int64_t cells) {
  Table t;
  t.g = choose_granule(items);
  t.cells = cells;
  const size_t n = items.size();
  t.base.resize(n);
  t.w.resize(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t lo = std::numeric_limits<int64_t>::max();
    for (const auto& c : items[i].choices) lo = std::min(lo, c.bytes);
    t.base[i] = lo;
    for (const auto& c : items[i].choices) t.w[i].push_back((c.bytes - lo + t.g - 1) / t.g);
  }
  t.dp.assign(cells, 0.0);
  t.back.assign(n * cells, 0);
  std::vector<double> next(cells);
  const double inf = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < n; ++i) {
    const auto& ch = items[i].choices;
    uint8_t* bk = &t.back[i * cells];
    for (int64_t c = 0; c < cells; ++c) {
      double best = inf;
      int bj = -1;
      for (size_t j = 0; j < ch.size(); ++j) {
        const int64_t wj = t.w[i][j];
        if (wj > c) continue;
        const double v = t.dp[c - wj] + ch[j].cost;
        if (v < best || (v == best && bj >= 0 && ch[j].bytes < ch[bj].bytes)) best = v, bj = int(j);
      }
      next[c] = best;
      bk[c] = uint8_t(bj < 0 ? 0 : bj);
    }
    t.dp.swap(next);
  }
  return t;
}

Solution backtrack(const std::vector<Item>& items, const Table& t, int64_t c) {
  Solution s;
  s.pick.assign(items.size(), 0);
  for (size_t i = items.size(); i-- > 0;) {
    const int j = t.back[i * t.cells + c];
    s.pick[i] = j;
    c -= t.w[i][j];
  }
  for (size_t i = 0; i < items.size(); ++i) {
    s.bytes += items[i].choices[s.pick[i]].bytes;
    s.cost += items[i].choices[s.pick[i]].cost;
  }
  return s;
}

// Spends leftover exact bytes: repeatedly applies the single-item change that lowers the cost
// most while still fitting (ties: fewer bytes, lower item index). Never increases cost.
void repair(const std::vector<Item>& items, int64_t capacity, Solution& s) {
  for (;;) {
    double best_gain = 0;
    int64_t best_extra = 0;
    int bi = -1, bj = -1;
    for (size_t i = 0; i < items.size(); ++i) {
      const Choice& cur = items[i].choices[s.pick[i]];
      for (size_t j = 0; j < items[i].choices.size(); ++j) {
        const Choice& c = items[i].choices[j];
        const int64_t extra = c.bytes - cur.bytes;
        const double gain = cur.cost - c.cost;
        if (gain <= 0 || s.bytes + extra > capacity) continue;
        if (gain > best_gain || (gain == best_gain && extra < best_extra))
          best_gain = gain, best_extra = extra, bi = int(i), bj = int(j);
      }
    }
    if (bi < 0) return;
    s.bytes += best_extra;
    s.cost -= best_gain;
    s.pick[bi] = bj;
  }
}

void recompute(const std::vector<Item>& items, Solution& s) {
  s.bytes = 0;
  s.cost = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    s.bytes += items[i].choices[s.pick[i]].bytes;
    s.cost += items[i].choices[s.pick[i]].cost;
  }
}

int64_t total_range_cells(const std::vector<Item>& items, int64_t g) {
  int64_t cells = 1;
  for (const auto& it : items) {
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
    for (const auto& c : it.choices) lo = std::min(lo, c.bytes), hi = std::max(hi, c.bytes);
    cells += (hi - lo + g - 1) / g;
  }
  return cells;
}
}  // namespace

int64_t min_total_bytes(const std::vector<Item>& items) {
  int64_t s = 0;
  for (const auto& it : items) {
    int64_t lo = std::numeric_limits<int64_t>::max();
    for (const auto& c : it.choices) lo = std::min(lo, c.bytes);
    s += it.choices.empty() ? 0 : lo;
  }
  return s;
}

int64_t max_total_bytes(const std::vector<Item>& items) {
  int64_t s = 0;
  for (const auto& it : items) {
    int64_t hi = 0;
    for (const auto& c : it.choices) hi = std::max(hi, c.bytes);
    s += hi;
  }
  return s;
}

std::optional<Solution> solve_budget(const std::vector<Item>& items, int64_t capacity, SolverStats* stats) {
  check_items(items);
  const int64_t lo = min_total_bytes(items);
  if (capacity < lo) return std::nullopt;
  const int64_t g = choose_granule(items);
  const int64_t cells = std::min(total_range_cells(items, g), (capacity - lo) / g + 1);
  Table t = run_dp(items, cells);
  Solution s = backtrack(items, t, cells - 1);
  recompute(items, s);
  repair(items, capacity, s);
  if (s.bytes > capacity) fail("planner: internal error, solution exceeds the budget");
  if (stats) stats->granule = t.g, stats->cells = cells;
  return s;
}

std::optional<Solution> solve_max_cost(const std::vector<Item>& items, double max_cost, SolverStats* stats) {
  check_items(items);
  const int64_t g = choose_granule(items);
  const int64_t cells = total_range_cells(items, g);
  Table t = run_dp(items, cells);
  // dp is non-increasing in capacity: the first capacity meeting the bound is the smallest.
  for (int64_t c = 0; c < cells; ++c) {
    if (t.dp[c] <= max_cost) {
      Solution s = backtrack(items, t, c);
      recompute(items, s);
      if (stats) stats->granule = t.g, stats->cells = cells;
      return s;
    }
  }
  return std::nullopt;
}

}  // namespace samq::plan
