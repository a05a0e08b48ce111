// serve/sampler.h — turns next-token logits into a token id, as OpenAI's parameters ask:
// temperature (0 = greedy), top_k (0 = off), top_p (1 = off), a per-request seed, logit_bias,
// presence_penalty and frequency_penalty, and the log-probabilities clients ask for.
//
// First the logits are adjusted as OpenAI documents: logit[t] += bias[t], then
// logit[t] -= frequency_penalty * c[t] + presence_penalty * (c[t] > 0), where c[t] counts t
// among the tokens generated so far (accept()). Logprobs are the log-softmax of these adjusted
// logits (temperature 1, before top-k/top-p), as vLLM reports them. Then, as llama.cpp's default
// chain: top-k, softmax with temperature, top-p (smallest set of the most likely tokens whose
// mass reaches p), renormalize, draw. Ties are broken by the lower token id. A constraint
// (allowed) masks tokens: when the first draw is not allowed, every disallowed token is
// removed and the draw repeated.
#pragma once
#include <cstdint>
#include <functional>
#include <unordered_map>
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
  float presence_penalty = 0.0f;   // [-2, 2]
  float frequency_penalty = 0.0f;  // [-2, 2]
  std::vector<std::pair<int32_t, float>> logit_bias;  // token id, [-100, 100]
  bool logprobs = false;           // report the chosen token's logprob
  int top_logprobs = 0;            // and this many alternatives
};

struct TokenLogprob {
  int32_t id = -1;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // most likely first
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  // allowed: a constraint (e.g. JSON); returns -1 when it allows no token. lp: filled when
  // logprobs were asked for.
  int32_t sample(std::span<const float> logits, const std::function<bool(int32_t)>& allowed = {},
                 TokenLogprob* lp = nullptr);
  // The token was generated (counts for the penalties).
  void accept(int32_t token);
  bool adjusts() const;  // bias or penalties in effect

  // The distribution sample() draws from (token id, probability), most likely first; empty
  // for greedy. Exposed for tests.
  std::vector<std::pair<int32_t, double>> distribution(std::span<const float> logits) const;

 private:
  int32_t draw(std::span<const float> logits);
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int> counts_;
  std::vector<float> adj_;
};

int32_t argmax(std::span<const float> logits);

}  // namespace samq::serve
