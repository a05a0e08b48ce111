// A synthetic model built in memory (no file) at the shape of a real one, for speed
// measurements only (bench/bench_cuda.cpp): random weights with trained-like statistics, never
// meaningful outputs.
//
//   auto m = bench::make_synthetic_model(bench::SyntheticConfig::llama3_8b(4));
//   m->prepare_weights(cuda_ops());
//
// Statistics and generator: export/synth_weights.h (shared with `samq synth`, which writes such
// weights to disk as an HF checkpoint): trained-like per-row scales, outlier input columns,
// norm weights around 1; matmul weights and the embedding stored as BF16 (default; F32
// possible), norms F32 as Model requires. Values come from a counter-based generator keyed by
// (seed, tensor, chunk) and are filled in parallel: the same model for any thread count.
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
#include "export/synth_weights.h"
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

// The generator and the weight statistics live in export/synth_weights.h (shared with
// `samq synth`); this header keeps its own names for bench_cuda.
using synth::mix64;
using synth::Rng;

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

// Fills t in parallel: value(r, c) = gen(rng, r, c), stored in t's type (F32 or BF16).
template <class Gen>
void fill(Tensor& t, uint64_t key, const Gen& gen) {
  synth::fill_chunks(const_cast<uint8_t*>(t.data), t.type == GgmlType::BF16, t.rows, t.cols, key, 0,
                     synth::n_chunks(t.rows, t.cols), gen);
}

// A matmul weight: per-row log-normal scales, a few outlier input columns.
inline Tensor linear(const std::string& name, GgmlType type, int64_t rows, int64_t cols, uint64_t key) {
  Tensor t = alloc_tensor(name, type, rows, cols);
  fill(t, key, synth::LinearGen(rows, cols, key));
  return t;
}

// A norm weight (1, n), F32: around 1, a few channels x4.
inline Tensor norm(const std::string& name, int64_t n, uint64_t key) {
  Tensor t = alloc_tensor(name, GgmlType::F32, 1, n);
  fill(t, key, synth::NormGen(n, key));
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
    fill(e, next_key(), synth::EmbeddingGen{});
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
