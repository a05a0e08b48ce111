// Token sampling from a logits row: greedy (temp <= 0), or temperature + top-k + top-p with a
// seeded generator (deterministic for a given seed).
#pragma once
#include <cstdint>
#include <random>

namespace samq {

struct SamplerParams {
  float temp = 0.8f;
  int top_k = 40;      // <= 0: no limit
  float top_p = 0.95f; // >= 1: no limit
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(SamplerParams p) : p_(p), rng_(p.seed) {}
  int32_t sample(const float* logits, int64_t n_vocab);

 private:
  SamplerParams p_;
  std::mt19937_64 rng_;
};

// First index of the maximum.
int32_t argmax(const float* logits, int64_t n);

}  // namespace samq
