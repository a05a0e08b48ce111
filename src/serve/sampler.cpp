#include "serve/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

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
  const size_t n = logits.size();
  auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  // Candidates: all tokens, or the top_k best (ties by lower id).
  std::vector<int32_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = int32_t(i);
  size_t k = n;
  bool sorted = false;
  if (p_.top_k > 0 && size_t(p_.top_k) < n) {
    k = size_t(p_.top_k);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), better);
    idx.resize(k);
    sorted = true;
  }
  float mx = logits[idx[0]];
  for (int32_t i : idx) mx = std::max(mx, logits[i]);
  double sum = 0;
  out.reserve(k);
  for (int32_t i : idx) {
    const double e = std::exp((double(logits[i]) - double(mx)) / double(p_.temperature));
    out.emplace_back(i, e);
    sum += e;
  }
  for (auto& [i, p] : out) p /= sum;
  if (p_.top_p >= 1.0f) return out;  // no nucleus cut: order does not matter, skip the sort
  // Nucleus: the most likely tokens until their mass reaches top_p. Sort only as far as needed
  // (the nucleus is usually small): partial sorts of growing prefixes, exact in the end.
  auto more_likely = [&](const std::pair<int32_t, double>& a, const std::pair<int32_t, double>& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  };
  size_t keep = 0;
  for (size_t m = std::min<size_t>(64, out.size());; m = std::min(out.size(), m * 8)) {
    if (!sorted) std::partial_sort(out.begin(), out.begin() + m, out.end(), more_likely);
    double cum = 0;
    keep = 0;
    while (keep < m) {
      cum += out[keep].second;
      ++keep;
      if (cum >= double(p_.top_p)) break;
    }
    if (cum >= double(p_.top_p) || m == out.size()) break;
  }
  out.resize(std::max<size_t>(keep, 1));
  double s = 0;
  for (auto& [i, p] : out) s += p;
  for (auto& [i, p] : out) p /= s;
  return out;
}

bool Sampler::adjusts() const {
  return !p_.logit_bias.empty() || p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f;
}

void Sampler::accept(int32_t token) {
  if (p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f) ++counts_[token];
}

int32_t Sampler::sample(std::span<const float> logits, const std::function<bool(int32_t)>& allowed, TokenLogprob* lp) {
  std::span<const float> use = logits;
  if (adjusts() || allowed) {
    adj_.assign(logits.begin(), logits.end());
    for (auto& [t, b] : p_.logit_bias)
      if (t >= 0 && size_t(t) < adj_.size()) adj_[size_t(t)] += b;
    for (auto& [t, c] : counts_)
      if (t >= 0 && size_t(t) < adj_.size())
        adj_[size_t(t)] -= p_.frequency_penalty * float(c) + (c > 0 ? p_.presence_penalty : 0.0f);
    use = adj_;
  }
  int32_t tok = draw(use);
  if (allowed && !allowed(tok)) {
    const float ninf = -std::numeric_limits<float>::infinity();
    bool any = false;
    for (size_t i = 0; i < adj_.size(); ++i) {
      if (adj_[i] == ninf) continue;
      if (allowed(int32_t(i))) any = true;
      else adj_[i] = ninf;
    }
    if (!any) return -1;
    tok = draw(adj_);
  }
  if (lp && p_.logprobs) {
    // log-softmax of the adjusted logits at temperature 1.
    float mx = -std::numeric_limits<float>::infinity();
    for (float l : use) mx = std::max(mx, l);
    double sum = 0;
    for (float l : use) sum += std::exp(double(l) - double(mx));
    const double lse = double(mx) + std::log(sum);
    lp->id = tok;
    lp->logprob = float(double(use[size_t(tok)]) - lse);
    lp->top.clear();
    const size_t k = std::min<size_t>(size_t(std::max(p_.top_logprobs, 0)), use.size());
    if (k > 0) {
      std::vector<int32_t> idx(use.size());
      for (size_t i = 0; i < idx.size(); ++i) idx[i] = int32_t(i);
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
        return use[a] > use[b] || (use[a] == use[b] && a < b);
      });
      for (size_t i = 0; i < k; ++i) lp->top.emplace_back(idx[i], float(double(use[idx[i]]) - lse));
    }
  }
  return tok;
}

int32_t Sampler::draw(std::span<const float> logits) {
  if (p_.temperature <= 0.0f) return argmax(logits);
  if (p_.top_p >= 1.0f && (p_.top_k <= 0 || size_t(p_.top_k) >= logits.size()) && !logits.empty()) {
    // Whole-vocabulary softmax (the API's default): the same weights as distribution(), without
    // its index and pair vectors; one exp per token, then the draw scans the cumulative sum.
    thread_local std::vector<double> e;
    e.resize(logits.size());
    float mx = logits[0];
    for (float l : logits) mx = std::max(mx, l);
    double sum = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      e[i] = std::exp((double(logits[i]) - double(mx)) / double(p_.temperature));
      sum += e[i];
    }
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_) * sum;
    double cum = 0;
    for (size_t i = 0; i < e.size(); ++i) {
      cum += e[i];
      if (u < cum) return int32_t(i);
    }
    for (size_t i = e.size(); i-- > 0;)  // rounding: the last token with any weight
      if (e[i] > 0) return int32_t(i);
    return int32_t(e.size() - 1);
  }
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
