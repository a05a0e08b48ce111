// The transformer forward pass over the op table (backend/ops.h), for one or several
// independent sequences at once, each with its own KV cache.
//
//   Model m = ...; KvCache c(m, 512);
//   Batch b; b.add(&c, tokens, /*all_logits=*/true);
//   forward(m, cpu_ops(), b);           // b.seqs[0].logits: (n_tokens, n_vocab)
//
// Token rows of all sequences are concatenated so every matmul sees all of them
// ((sum n_tokens, n_embd) x W^T); attention runs per sequence over its own cache.
//
// Every op runs on `ops`, with activations in its memory (backend/ops.h); the model's weights
// must be prepared for it (Model::load(path, ops)). Only the logits come back to the host.
//
// For the sensitivity analysis:
// - hooks.on_activation(name, layer, data, rows, cols) (data in the backend's memory) is called for each intermediate (see
//   the list below) with rows = total tokens of the batch. layer = -1 for non-layer tensors.
//   Names: "inp_embd"(-1), per layer: "attn_inp" (residual entering the layer), "attn_norm",
//   "q", "k", "v" (after bias, q/k norm and rope), "kq_out" (attention output before
//   attn_output), "attn_out", "ffn_inp" (residual after attention), "ffn_norm", "gate", "up",
//   "ffn_act" (silu(gate)*up), "ffn_out", "l_out"; then "result_norm"(-1), "logits"(-1).
//   MoE layers (model/moe.h) give "ffn_moe_logits" instead of "gate", "up", "ffn_act", and per
//   expert, through on_expert, "ffn_moe_inp" and "ffn_moe_act" (the rows routed to that expert).
// - start_layer / start_input: run layers start_layer.. only, starting from a saved "attn_inp"
//   activation of that layer (rows = total tokens, backend memory). KV caches of the skipped layers are left
//   untouched (they must not be needed later: use fresh caches per evaluation chunk).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "backend/buffer.h"
#include "backend/ops.h"
#include "model/model.h"
#include "model/moe.h"

namespace samq {

// Per-sequence KV cache: for each layer, K and V rows (n_ctx, n_head_kv*head_dim) held as f32
// but rounded to f16 on the way in when f16 is set (llama.cpp's default cache type; the
// queries are then rounded to f16 too, as ggml's f16 dot product does). The rows live in the
// memory of a backend (by default the one the model's weights are prepared for, Model::ops).
class KvCache {
 public:
  KvCache() = default;
  KvCache(const Model& m, int64_t n_ctx);
  KvCache(const Model& m, int64_t n_ctx, const Ops& ops);
  const Ops& ops() const { return *ops_; }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_past() const { return n_past_; }  // tokens already in the cache
  void clear() { n_past_ = 0; }
  // Drops tokens after position n (n <= n_past), e.g. to rewind a sequence.
  void truncate(int64_t n);

  // Backend memory; a layer's rows are allocated on its first use (a layer-streamed pass that
  // runs one layer at a time holds one layer's cache).
  float* k(int64_t layer) { return ensure(k_, layer); }
  float* v(int64_t layer) { return ensure(v_, layer); }
  // Frees the rows of one layer (its contents are lost).
  void release_layer(int64_t layer);
  int64_t n_past_ = 0;
  bool f16 = true;  // default: the model's ggml_numerics

 private:
  float* ensure(std::vector<Buffer<float>>& b, int64_t layer);
  const Ops* ops_ = nullptr;
  int64_t n_ctx_ = 0, width_ = 0;
  std::vector<Buffer<float>> k_, v_;
};

struct ForwardHooks {
  std::function<void(std::string_view name, int layer, const float* data, int64_t rows,
                     int64_t cols)>
      on_activation;
  std::function<void(std::string_view name, int layer, int expert, const float* data, int64_t rows, int64_t cols)>
      on_expert;
};

struct BatchSeq {
  KvCache* cache = nullptr;
  std::vector<int32_t> tokens;  // appended at positions cache->n_past() ...
  bool all_logits = false;      // false: logits of the last token only
  int64_t logits_from = 0;      // with all_logits: only rows logits_from .. n_tokens-1
  std::vector<float> logits;    // out: (all_logits ? n_tokens - logits_from : 1, n_vocab)
};

struct Batch {
  std::vector<BatchSeq> seqs;
  BatchSeq& add(KvCache* c, std::vector<int32_t> tokens, bool all_logits = false) {
    seqs.push_back({c, std::move(tokens), all_logits, 0, {}});
    return seqs.back();
  }
};

struct ForwardOptions {
  const ForwardHooks* hooks = nullptr;
  int start_layer = 0;
  const float* start_input = nullptr;  // (total tokens, n_embd) when start_layer > 0 (backend memory)
  // Run layers start_layer .. end_layer-1 only (-1: all). With end_layer < n_layer no logits are
  // computed; end_layer == 0 runs the embedding lookup alone. The residual stream after the last
  // layer run (total tokens, n_embd) is copied to residual_out (backend memory) when set.
  int end_layer = -1;
  float* residual_out = nullptr;
  bool skip_logits = false;            // stop after the last layer (e.g. activations only)
  // Backend memory for the logits (rows in batch order, n_vocab each); when set, they stay there
  // and the sequences' `logits` vectors are left alone (the analysis keeps them on the device).
  float* logits_out = nullptr;
};

// Runs the batch; appends the tokens to each cache and fills each seq's logits.
// Activation buffers live in a per-thread workspace that only grows (a decode step allocates
// nothing); hooks see them only during the call. Results do not depend on the thread count
// (backend/cpu tiles by shape, never by thread).
void forward(const Model& m, const Ops& ops, Batch& batch, const ForwardOptions& opt = {});

// Convenience: logits (n_tokens, n_vocab) of one fresh sequence.
std::vector<float> forward_logits(const Model& m, const Ops& ops, std::span<const int32_t> tokens);

}  // namespace samq
