#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace samq {

int32_t argmax(const float* x, int64_t n) {
  int64_t b = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[b]) b = i;
  return int32_t(b);
}

int32_t Sampler::sample(const float* logits, int64_t n) {
  if (p_.temp <= 0.0f) return argmax(logits, n);
  std::vector<int32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  int64_t k = (p_.top_k > 0 && p_.top_k < n) ? p_.top_k : n;
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  idx.resize(k);
  std::vector<double> pr(k);
  const double mx = logits[idx[0]];
  double sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += (pr[i] = std::exp((logits[idx[i]] - mx) / p_.temp));
  int64_t keep = k;
  if (p_.top_p < 1.0f) {
    double c = 0;
    for (int64_t i = 0; i < k; ++i) {
      c += pr[i] / sum;
      if (c >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double tot = 0;
  for (int64_t i = 0; i < keep; ++i) tot += pr[i];
  double u = std::uniform_real_distribution<double>(0.0, tot)(rng_);
  for (int64_t i = 0; i < keep; ++i) {
    u -= pr[i];
    if (u <= 0) return idx[i];
  }
  return idx[keep - 1];
}

}  // namespace samq
