// Counter-based Gumbel noise for drawing labels from a softmax by the Gumbel-max trick:
//   label = argmax_i (logit_i + gumbel_noise(key, i))  ~  softmax(logits).
// The same integer hash and double arithmetic compile for the host and for CUDA device code, so
// every backend draws the same labels from the same logits. Unlike an inverse CDF (whose
// cumulative sums shift with every small change of any probability), a label changes only where
// the two best perturbed scores lie within the change of the logits: small differences between
// backends or thread counts flip very few labels.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SAMQ_HOST_DEVICE __host__ __device__
#else
#define SAMQ_HOST_DEVICE
#endif

namespace samq {

SAMQ_HOST_DEVICE inline uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// -log(-log(u)) with u = the uniform in (0, 1) of (key, i).
SAMQ_HOST_DEVICE inline double gumbel_noise(uint64_t key, uint64_t i) {
  const uint64_t h = splitmix64(splitmix64(key) ^ i);
  const double u = (double(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  return -log(-log(u));
}

}  // namespace samq
