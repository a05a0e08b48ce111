#include "serve/sampler.h"

#include <algorithm>
#include <cmath>

namespace samq::serve {

int32_t argmax(std::span<const float> logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = int32_t(i);
  return best;
}

Sampler::Sampler(const SamplingParams& p) : p_(p) {
  if (p.seed) rng_.seed(*p.seed);
  else rng_.seed(std::random_device{}());
}

std::vector<std::pair<int32_t, double>> Sampler::distribution(std::span<const float> logits) const {
  std::vector<std::pair<int32_t, double>> out;
  if (p_.temperature <= 0.0f || logits.empty()) return out;
  std::vector<int32_t> idx(logits.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = int32_t(i);
  auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  size_t k = idx.size();
  if (p_.top_k > 0 && size_t(p_.top_k) < k) {
    k = size_t(p_.top_k);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), better);
    idx.resize(k);
  } else {
    std::sort(idx.begin(), idx.end(), better);
  }
  const double mx = logits[idx[0]];
  double sum = 0;
  out.reserve(k);
  for (int32_t i : idx) {
    const double e = std::exp((double(logits[i]) - mx) / double(p_.temperature));
    out.emplace_back(i, e);
    sum += e;
  }
  for (auto& [i, p] : out) p /= sum;
  if (p_.top_p < 1.0f) {
    double cum = 0;
    size_t keep = 0;
    while (keep < out.size()) {
      cum += out[keep].second;
      ++keep;
      if (cum >= double(p_.top_p)) break;
    }
    out.resize(std::max<size_t>(keep, 1));
    double s = 0;
    for (auto& [i, p] : out) s += p;
    for (auto& [i, p] : out) p /= s;
  }
  return out;
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (p_.temperature <= 0.0f) return argmax(logits);
  auto d = distribution(logits);
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  double cum = 0;
  for (auto& [i, p] : d) {
    cum += p;
    if (u < cum) return i;
  }
  return d.back().first;
}

}  // namespace samq::serve
