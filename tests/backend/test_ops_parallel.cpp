// core/parallel.h's thread pool, as the ops use it: every chunk runs exactly once with the
// documented boundaries, for any thread count; exceptions reach the caller; nested and
// concurrent callers (serve threads) work; the pool survives thread-count changes.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/parallel.h"

using namespace samq;

namespace {

// Runs parallel_for(n, chunk) and checks each index is covered once and each call is one
// chunk [c*chunk, min(n, (c+1)*chunk)) (or the whole range when one thread runs it).
void check_cover(int64_t n, int64_t chunk) {
  std::vector<std::atomic<int>> hits(size_t(std::max<int64_t>(n, 1)));
  for (auto& h : hits) h = 0;
  std::atomic<int> bad_bounds{0};
  parallel_for(n, chunk, [&](int64_t b, int64_t e) {
    const bool whole = b == 0 && e == n;
    if (!whole && (b % chunk != 0 || e != std::min(n, b + chunk))) ++bad_bounds;
    for (int64_t i = b; i < e; ++i) ++hits[size_t(i)];
  });
  EXPECT_EQ(bad_bounds.load(), 0) << "n=" << n << " chunk=" << chunk;
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "n=" << n << " chunk=" << chunk << " i=" << i;
}

}  // namespace

TEST(Parallel, EveryChunkOnceAnyThreadCount) {
  for (int t : {1, 2, 3, 5}) {
    set_num_threads(t);
    for (int64_t n : {0, 1, 2, 7, 64, 1000})
      for (int64_t chunk : {1, 3, 16, 5000}) check_cover(n, chunk);
  }
  set_num_threads(0);
}

TEST(Parallel, ManyShortRegionsBackToBack) {
  set_num_threads(3);
  std::atomic<int64_t> sum{0};
  for (int rep = 0; rep < 20000; ++rep)
    parallel_for(6, 1, [&](int64_t b, int64_t e) { sum += e - b; });
  EXPECT_EQ(sum.load(), 6 * 20000);
  set_num_threads(0);
}

TEST(Parallel, ExceptionReachesCallerAndPoolStaysUsable) {
  set_num_threads(2);
  EXPECT_THROW(parallel_for(100, 1,
                            [&](int64_t b, int64_t) {
                              if (b == 37) throw std::runtime_error("chunk 37");
                            }),
               std::runtime_error);
  check_cover(100, 7);
  set_num_threads(0);
}

TEST(Parallel, NestedRunsInnerChunksSerially) {
  set_num_threads(2);
  std::atomic<int64_t> inner{0};
  parallel_for(8, 1, [&](int64_t, int64_t) {
    parallel_for(10, 3, [&](int64_t b, int64_t e) { inner += e - b; });
  });
  EXPECT_EQ(inner.load(), 80);
  set_num_threads(0);
}

TEST(Parallel, ConcurrentCallersFromSeveralThreads) {
  set_num_threads(2);
  std::atomic<int64_t> total{0};
  std::vector<std::thread> th;
  for (int k = 0; k < 3; ++k)
    th.emplace_back([&] {
      for (int rep = 0; rep < 2000; ++rep) parallel_for(50, 4, [&](int64_t b, int64_t e) { total += e - b; });
    });
  for (auto& t : th) t.join();
  EXPECT_EQ(total.load(), 3 * 2000 * 50);
  set_num_threads(0);
}
