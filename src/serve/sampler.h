// serve/sampler.h — turns next-token logits into a token id, as OpenAI's parameters ask:
// temperature (0 = greedy), top_k (0 = off), top_p (1 = off), and a per-request seed.
//
// Order as llama.cpp's default chain for these three: top-k, then softmax with temperature,
// then top-p (smallest set of the most likely tokens whose mass reaches p), renormalize,
// draw. Ties are broken by the lower token id, so results do not depend on sort stability.
#pragma once
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <vector>

namespace samq::serve {

struct SamplingParams {
  float temperature = 1.0f;
  float top_p = 1.0f;
  int top_k = 0;
  std::optional<uint64_t> seed;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  int32_t sample(std::span<const float> logits);

  // The distribution sample() draws from (token id, probability), most likely first; empty
  // for greedy. Exposed for tests.
  std::vector<std::pair<int32_t, double>> distribution(std::span<const float> logits) const;

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

int32_t argmax(std::span<const float> logits);

}  // namespace samq::serve
