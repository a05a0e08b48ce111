// A synthetic model built in memory (no file) at the shape of a real one, for speed
// measurements only (bench/bench_cuda.cpp): random weights with trained-like statistics, never
// meaningful outputs.
//
//   auto m = bench::make_synthetic_model(bench::SyntheticConfig::llama3_8b(4));
//   m->prepare_weights(cuda_ops());
//
// Statistics (loosely those of trained Llama checkpoints, so activations keep realistic
// magnitudes and no NaN/Inf appears):
//   - matmul weights W (rows, cols): N(0, 1) * std / sqrt(cols) * row_scale[r] * col_scale[c],
//     row_scale log-normal (sigma 0.25), col_scale 1 except a few outlier input columns (x6);
//   - token embedding N(0, 1) * 0.02 (Llama-3's embedding std is ~0.01-0.02);
//   - norm weights 1 + 0.1 N(0, 1), a few channels x4 (activation outliers);
//   - stored as BF16 (default; F32 possible); norms F32 as Model requires.
// Values come from a counter-based generator keyed by (seed, tensor, chunk) and are filled in
// parallel (core/parallel.h): the same model for any thread count.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "core/ggml_type.h"
#include "core/parallel.h"
#include "model/model.h"

namespace samq::bench {

struct SyntheticConfig {
  std::string label = "synthetic";
  int64_t n_vocab = 128256, n_embd = 4096, n_layer = 4, n_head = 32, n_head_kv = 8, head_dim = 128, n_ff = 14336;
  float rope_theta = 500000.0f, rms_eps = 1e-5f;
  bool tied = false;
  GgmlType type = GgmlType::BF16;  // matmul weights and the embedding
  uint64_t seed = 0x8b5eed;

  // Llama-3-8B's shape (32 layers in the real model) with n_layer layers, untied output head.
  static SyntheticConfig llama3_8b(int64_t layers) {
    SyntheticConfig c;
    c.n_layer = layers;
    c.label = "synth-llama3-8b-shape-" + std::to_string(layers) + "L";
    return c;
  }
  // A tiny shape for CPU smoke runs.
  static SyntheticConfig tiny() {
    SyntheticConfig c;
    c.n_vocab = 1000;
    c.n_embd = 256;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = 64;
    c.n_ff = 704;
    c.label = "synth-tiny-256x2L";
    return c;
  }
};

namespace synth_detail {

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

inline Tensor alloc_tensor(const std::string& name, GgmlType type, int64_t rows, int64_t cols) {
  Tensor t;
  t.name = name;
  t.type = type;
  t.rows = rows;
  t.cols = cols;
  t.owned = std::make_shared<std::vector<uint8_t>>(size_t(t.n_bytes()));
  t.data = t.owned->data();
  return t;
}

// Fills rows of t in parallel: value(r, c) = gen(rng, r, c), stored in t's type (F32 or BF16).
template <class Gen>
void fill(Tensor& t, uint64_t key, Gen gen) {
  const int64_t rows = t.rows, cols = t.cols;
  const int64_t rows_per_chunk = std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(1, cols));
  const int64_t chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  uint8_t* base = const_cast<uint8_t*>(t.data);
  const GgmlType type = t.type;
  parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t ch = b; ch < e; ++ch) {
      Rng rng(key * 0x100000001b3ull + uint64_t(ch));
      const int64_t r1 = std::min(rows, (ch + 1) * rows_per_chunk);
      for (int64_t r = ch * rows_per_chunk; r < r1; ++r) {
        if (type == GgmlType::BF16) {
          uint16_t* row = reinterpret_cast<uint16_t*>(base) + r * cols;
          for (int64_t c = 0; c < cols; ++c) row[c] = f32_to_bf16(gen(rng, r, c));
        } else {
          float* row = reinterpret_cast<float*>(base) + r * cols;
          for (int64_t c = 0; c < cols; ++c) row[c] = gen(rng, r, c);
        }
      }
    }
  });
}

// A matmul weight: per-row log-normal scales, a few outlier input columns.
inline Tensor linear(const std::string& name, GgmlType type, int64_t rows, int64_t cols, uint64_t key) {
  Tensor t = alloc_tensor(name, type, rows, cols);
  std::vector<float> row_scale(static_cast<size_t>(rows)), col_scale(static_cast<size_t>(cols), 1.0f);
  Rng g(key ^ 0x51ca1e5ull);
  for (auto& s : row_scale) s = std::exp(0.25f * g.gauss());
  const int64_t n_out = std::max<int64_t>(1, cols / 1024);  // ~0.1% outlier columns
  for (int64_t i = 0; i < n_out; ++i) col_scale[size_t(g.next() % uint64_t(cols))] = 6.0f;
  const float base = 1.0f / std::sqrt(float(cols));
  fill(t, key, [&](Rng& r, int64_t row, int64_t col) { return base * row_scale[row] * col_scale[col] * r.gauss(); });
  return t;
}

// A norm weight (1, n), F32: around 1, a few channels x4.
inline Tensor norm(const std::string& name, int64_t n, uint64_t key) {
  Tensor t = alloc_tensor(name, GgmlType::F32, 1, n);
  Rng g(key ^ 0x4e024dull);
  std::vector<float> boost(static_cast<size_t>(n), 1.0f);
  for (int64_t i = 0; i < std::max<int64_t>(1, n / 512); ++i) boost[size_t(g.next() % uint64_t(n))] = 4.0f;
  fill(t, key, [&](Rng& r, int64_t, int64_t c) { return boost[c] * (1.0f + 0.1f * r.gauss()); });
  return t;
}

}  // namespace synth_detail

// The model, weights on the host (call prepare_weights for the backend that runs it).
inline std::shared_ptr<Model> make_synthetic_model(const SyntheticConfig& c) {
  using namespace synth_detail;
  auto m = std::make_shared<Model>();
  ModelHparams& h = m->hparams;
  h.arch = "llama";
  h.n_vocab = c.n_vocab;
  h.n_ctx_train = 8192;
  h.n_embd = c.n_embd;
  h.n_layer = c.n_layer;
  h.n_head = c.n_head;
  h.n_head_kv = c.n_head_kv;
  h.head_dim = c.head_dim;
  h.n_ff = c.n_ff;
  h.rope_theta = c.rope_theta;
  h.rms_eps = c.rms_eps;
  h.tied_embeddings = c.tied;
  h.bos_id = 0;
  h.eos_id = 1;
  h.source_dtype = c.type == GgmlType::BF16 ? "bf16" : "f32";
  h.validate(c.label);
  uint64_t key = c.seed * 1000003ull;
  auto next_key = [&] { return ++key; };
  ModelWeights& w = m->weights;
  {
    Tensor e = alloc_tensor("token_embd.weight", c.type, c.n_vocab, c.n_embd);
    fill(e, next_key(), [](Rng& r, int64_t, int64_t) { return 0.02f * r.gauss(); });
    w.token_embd = std::move(e);
  }
  const int64_t nq = c.n_head * c.head_dim, nkv = c.n_head_kv * c.head_dim;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights L;
    L.attn_norm = norm(p + "attn_norm.weight", c.n_embd, next_key());
    L.attn_q = linear(p + "attn_q.weight", c.type, nq, c.n_embd, next_key());
    L.attn_k = linear(p + "attn_k.weight", c.type, nkv, c.n_embd, next_key());
    L.attn_v = linear(p + "attn_v.weight", c.type, nkv, c.n_embd, next_key());
    L.attn_output = linear(p + "attn_output.weight", c.type, c.n_embd, nq, next_key());
    L.ffn_norm = norm(p + "ffn_norm.weight", c.n_embd, next_key());
    L.ffn_gate = linear(p + "ffn_gate.weight", c.type, c.n_ff, c.n_embd, next_key());
    L.ffn_up = linear(p + "ffn_up.weight", c.type, c.n_ff, c.n_embd, next_key());
    L.ffn_down = linear(p + "ffn_down.weight", c.type, c.n_embd, c.n_ff, next_key());
    w.layers.push_back(std::move(L));
  }
  w.output_norm = norm("output_norm.weight", c.n_embd, next_key());
  if (!c.tied) w.output = linear("output.weight", c.type, c.n_vocab, c.n_embd, next_key());
  m->path = "<" + c.label + ">";
  return m;
}

}  // namespace samq::bench
