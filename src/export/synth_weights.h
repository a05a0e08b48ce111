// Random weights with statistics like trained ones, for scale and speed tests only (never for
// quality figures). Shared by `samq synth` (src/export/synth.cpp: a sharded HF checkpoint on
// disk) and bench/synthetic_model.h (an in-memory Model for bench_cuda).
//
// Statistics (loosely those of trained Llama checkpoints, so activations keep realistic
// magnitudes and no NaN/Inf appears):
//   - matmul weights W (rows, cols): N(0, 1) / sqrt(cols) * row_scale[r] * col_scale[c],
//     row_scale log-normal (sigma 0.25), col_scale 1 except max(1, cols/1024) outlier input
//     columns (x6);
//   - token embedding N(0, 1) * 0.02 (Llama-3's embedding std is ~0.01-0.02);
//   - norm weights 1 + 0.1 N(0, 1), max(1, n/512) channels x4 (activation outliers);
//   - biases (qwen2 q/k/v) N(0, 1) * 0.05.
//
// Determinism: a tensor of (rows, cols) is cut into chunks of rows_per_chunk(cols) rows (a
// function of cols only); chunk ch draws its values in row-major order from a counter-based
// stream Rng(key * 0x100000001b3 + ch). Chunks are filled in parallel (core/parallel.h) and any
// subset of chunks can be generated alone, so the values depend on (key, shape) only: not on
// the thread count, nor on how a writer slices the tensor.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/fp16.h"
#include "core/parallel.h"

namespace samq::synth {

inline uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// xorshift64* stream seeded from a key; gauss() is the Irwin-Hall sum of four 16-bit uniforms,
// scaled to unit variance (light tails, cheap: statistics for speed tests, not for science).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t key) : s(mix64(key) | 1) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545f4914f6cdd1dull;
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }
  float gauss() {
    const uint64_t r = next();
    const float sum = float(r & 0xffff) + float((r >> 16) & 0xffff) + float((r >> 32) & 0xffff) + float(r >> 48);
    // mean 4 * 32767.5, variance 4 * (65536^2 - 1) / 12
    return (sum - 131070.0f) * (1.0f / 37837.23f);
  }
};

// Rows per generator chunk (~256K values), a function of the row length only.
inline int64_t rows_per_chunk(int64_t cols) {
  return std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(1, cols));
}
inline int64_t n_chunks(int64_t rows, int64_t cols) {
  const int64_t rpc = rows_per_chunk(cols);
  return (rows + rpc - 1) / rpc;
}

// Fills chunks [ch0, ch1) of a (rows, cols) tensor: value(r, c) = gen(rng, r, c), stored as
// BF16 (bf16 = true) or F32. `out` points at the first row of chunk ch0 (row ch0 *
// rows_per_chunk(cols)); chunks are filled in parallel.
template <class Gen>
void fill_chunks(void* out, bool bf16, int64_t rows, int64_t cols, uint64_t key, int64_t ch0, int64_t ch1, const Gen& gen) {
  const int64_t rpc = rows_per_chunk(cols);
  const int64_t row0 = ch0 * rpc;
  uint8_t* base = static_cast<uint8_t*>(out);
  parallel_for(ch1 - ch0, 1, [&](int64_t b, int64_t e) {
    for (int64_t ch = ch0 + b; ch < ch0 + e; ++ch) {
      Rng rng(key * 0x100000001b3ull + uint64_t(ch));
      const int64_t r1 = std::min(rows, (ch + 1) * rpc);
      for (int64_t r = ch * rpc; r < r1; ++r) {
        if (bf16) {
          uint16_t* row = reinterpret_cast<uint16_t*>(base) + (r - row0) * cols;
          for (int64_t c = 0; c < cols; ++c) row[c] = f32_to_bf16(gen(rng, r, c));
        } else {
          float* row = reinterpret_cast<float*>(base) + (r - row0) * cols;
          for (int64_t c = 0; c < cols; ++c) row[c] = gen(rng, r, c);
        }
      }
    }
  });
}

// A matmul weight's generator: per-row log-normal scales, a few outlier input columns.
struct LinearGen {
  std::vector<float> row_scale, col_scale;
  float base = 0;
  LinearGen(int64_t rows, int64_t cols, uint64_t key)
      : row_scale(static_cast<size_t>(rows)), col_scale(static_cast<size_t>(cols), 1.0f) {
    Rng g(key ^ 0x51ca1e5ull);
    for (auto& s : row_scale) s = std::exp(0.25f * g.gauss());
    const int64_t n_out = std::max<int64_t>(1, cols / 1024);  // ~0.1% outlier columns
    for (int64_t i = 0; i < n_out; ++i) col_scale[size_t(g.next() % uint64_t(cols))] = 6.0f;
    base = 1.0f / std::sqrt(float(cols));
  }
  float operator()(Rng& r, int64_t row, int64_t col) const {
    return base * row_scale[size_t(row)] * col_scale[size_t(col)] * r.gauss();
  }
};

// A norm weight's generator (one row of n): around 1, a few channels x4.
struct NormGen {
  std::vector<float> boost;
  NormGen(int64_t n, uint64_t key) : boost(static_cast<size_t>(n), 1.0f) {
    Rng g(key ^ 0x4e024dull);
    for (int64_t i = 0; i < std::max<int64_t>(1, n / 512); ++i) boost[size_t(g.next() % uint64_t(n))] = 4.0f;
  }
  float operator()(Rng& r, int64_t, int64_t c) const { return boost[size_t(c)] * (1.0f + 0.1f * r.gauss()); }
};

// Token embedding rows: N(0, 0.02^2).
struct EmbeddingGen {
  float operator()(Rng& r, int64_t, int64_t) const { return 0.02f * r.gauss(); }
};

// Projection biases: N(0, 0.05^2).
struct BiasGen {
  float operator()(Rng& r, int64_t, int64_t) const { return 0.05f * r.gauss(); }
};

}  // namespace samq::synth
