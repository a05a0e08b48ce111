// RoPE on the pool's threads: every thread must rotate with the caller's tables. (A thread-local
// table read inside the parallel loop crashed `samq analyze` with 2+ threads: the backward pass
// rotates by negative positions, which takes the per-call path.)
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/ops.h"
#include "core/parallel.h"

using namespace samq;

TEST(RopeThreads, NegativeAndPositivePositionsMatchReferenceOnAnyThreadCount) {
  const int64_t n = 70, n_head = 3, head_dim = 16;
  std::mt19937 g(9);
  std::normal_distribution<float> d;
  std::vector<float> x0(static_cast<size_t>(n * n_head * head_dim));
  for (auto& v : x0) v = d(g);
  for (bool neox : {false, true}) {
    RopeParams p;
    p.n_rot = head_dim;
    p.theta = 10000.0f;
    p.neox = neox;
    for (int sign : {1, -1}) {
      std::vector<int32_t> pos(static_cast<size_t>(n));
      for (int64_t t = 0; t < n; ++t) pos[size_t(t)] = sign * int32_t(3 * t + 1);
      std::vector<float> ref = x0;
      reference_ops().rope(ref.data(), n, n_head, head_dim, pos.data(), p);
      for (int threads : {1, 2, 3}) {
        set_num_threads(threads);
        std::vector<float> got = x0;
        cpu_ops().rope(got.data(), n, n_head, head_dim, pos.data(), p);
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_NEAR(got[i], ref[i], 1e-5f * (1 + std::fabs(ref[i])))
              << "threads " << threads << " neox " << neox << " sign " << sign << " at " << i;
      }
    }
  }
  set_num_threads(0);
}
