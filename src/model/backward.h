// The model's backward pass: gradients of a loss over the logits with respect to every weight
// tensor (linear weights, token embeddings, output head, norms, biases, q/k norms) for the
// llama / mistral / qwen2 / qwen3 forward of model/forward.h, written once over a backend's
// op tables (backend/ops.h, backend/ops_backward.h): the same walk runs on the CPU and on CUDA.
//
//   ModelGradient mg(model, cpu_backward_ops());             // or the CUDA tables
//   const float* logits = mg.forward(tokens);                // (n, n_vocab), backend memory
//   bops.softmax_cross_entropy_backward(logits, labels, n, n_vocab, 1, dlogits, nullptr);
//   GradientBuffers grads(model.weights, bops.ops());        // zeroed, backend memory
//   mg.backward(dlogits, &grads, &hooks);                    // accumulates dL/dW into grads
//
// The forward is the engine's own (model/forward.h): its activation hooks record every
// intermediate keyed by (name, layer) into backend buffers, and the backward walks the layers in
// reverse with the BackwardOps, recomputing through the forward table what the hooks do not give
// (rms_norm's rstd, attention's softmax weights, pre-norm q/k of qwen3).
// Hooks let the analysis see, for every linear weight W (y = x W^T), its input x and output
// gradient dy (backend memory) without keeping the full weight gradient (the factored Fisher and
// imatrix need only those).
//
// Non-goals: training (no optimizer, no mixed precision); batching several sequences (one
// sequence of up to n_ctx tokens per call keeps GEMM shapes large enough already).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backend/buffer.h"
#include "backend/ops.h"
#include "backend/ops_backward.h"
#include "model/forward.h"
#include "model/model.h"

namespace samq {

struct BackwardHooks {
  // Called once per linear weight during backward: x (n, w.cols) is the weight's input and
  // dy (n, w.rows) the gradient of the loss w.r.t. its output (bias included); backend memory.
  std::function<void(const Tensor& w, const float* x, const float* dy, int64_t n)> on_linear;
  // The same for matrix `expert` of a stacked expert tensor (MoE): x (n, w.cols) the rows routed
  // to that expert, dy (n, w.mat_rows()). Experts no token was routed to get no call.
  std::function<void(const Tensor& w, int expert, const float* x, const float* dy, int64_t n)> on_expert_linear;
  // Called once for the token embedding lookup: ids (n, host) and dy (n, w.cols, backend), the
  // gradient w.r.t. the looked-up rows.
  std::function<void(const Tensor& w, const int32_t* ids, const float* dy, int64_t n)> on_embedding;
};

// One f32 gradient buffer (rows * cols, backend memory) per present tensor of a model, in
// for_each_tensor order.
class GradientBuffers {
 public:
  GradientBuffers() = default;
  GradientBuffers(const ModelWeights& w, const Ops& ops);  // zeroed
  // Buffers for a subset of the tensors only (a layer-streamed pass keeps one layer's), zeroed.
  GradientBuffers(const std::vector<const Tensor*>& tensors, const Ops& ops);
  void zero();
  float* find(const std::string& name);  // nullptr when absent
  struct Entry {
    std::string name;
    int64_t rows = 0, cols = 0;
    Buffer<float> g;
  };
  std::vector<Entry>& entries() { return entries_; }
  std::vector<float> to_host(const std::string& name);  // throws when absent

 private:
  std::vector<Entry> entries_;
};

class ModelGradient {
 public:
  ModelGradient(const Model& m, const BackwardOps& bops);

  // Forward of one fresh sequence at positions 0..n-1, keeping the activations backward needs.
  // Returns the logits (n, n_vocab) in backend memory, valid until the next forward().
  const float* forward(std::span<const int32_t> tokens);
  std::vector<float> logits_host() const;

  // Backward from dlogits (n, n_vocab, backend memory) of the last forward(). Gradients are
  // accumulated into grads (may be null when only the hooks are wanted); tensors without a
  // buffer in grads get none.
  void backward(const float* dlogits, GradientBuffers* grads, const BackwardHooks* hooks = nullptr);

  // The same walk in pieces, for a layer-streamed pass that holds one layer's activations at a
  // time (analyze/layer_stream.h). backward() is exactly backward_head, backward_layer for
  // every layer from the top, then backward_embedding, on the same buffers.
  //   forward_head(tokens, x_top): the output norm and head from the residual after the last
  //     layer (n, n_embd, backend memory); returns the logits as forward() does.
  //   forward_layer(l, x_in): recomputes layer l from its input residual, recording its
  //     activations (those of other layers are dropped).
  //   backward_head: dres (n, n_embd, backend memory) := dL/d(residual after the last layer).
  //   backward_layer: dres := dL/d(input residual of layer l), from dL/d(its output).
  //   backward_embedding: the token embedding's gradient and hook from dres at the bottom.
  const float* forward_head(std::span<const int32_t> tokens, const float* x_top);
  void forward_layer(int layer, std::span<const int32_t> tokens, const float* x_in);
  void backward_head(const float* dlogits, float* dres, GradientBuffers* grads, const BackwardHooks* hooks);
  void backward_layer(int layer, float* dres, GradientBuffers* grads, const BackwardHooks* hooks);
  void backward_embedding(const float* dres, GradientBuffers* grads, const BackwardHooks* hooks);
  // The chunk whose gradient backward_embedding takes, without running anything.
  void set_tokens(std::span<const int32_t> tokens) { tokens_.assign(tokens.begin(), tokens.end()); }

  // An activation recorded by the last forward(): (n, width) in backend memory, keyed as in
  // model/forward.h.
  const float* activation(std::string_view name, int layer) const;
  int64_t n_tokens() const { return int64_t(tokens_.size()); }
  const Model& model() const { return m_; }
  const BackwardOps& bops() const { return bops_; }

 private:
  const Model& m_;
  const BackwardOps& bops_;
  const Ops& ops_;
  std::vector<int32_t> tokens_;
  Buffer<int32_t> tokens_b_, pos_b_;
  std::vector<int32_t> pos_host_;
  Buffer<float> logits_;
  std::map<std::pair<std::string, int>, Buffer<float>> acts_;
  ForwardHooks recorder();
  const int32_t* positions();
  struct Scratch {
    Buffer<float> dres, dnorm, dact, dgate, dup, dq, dk, dv, dkq, pre, dpre, dfused;
    MoeWorkspace moe;
  } scratch_;
};

}  // namespace samq
