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
#include "model/model.h"

namespace samq {

struct BackwardHooks {
  // Called once per linear weight during backward: x (n, w.cols) is the weight's input and
  // dy (n, w.rows) the gradient of the loss w.r.t. its output (bias included); backend memory.
  std::function<void(const Tensor& w, const float* x, const float* dy, int64_t n)> on_linear;
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
  // accumulated into grads (may be null when only the hooks are wanted).
  void backward(const float* dlogits, GradientBuffers* grads, const BackwardHooks* hooks = nullptr);

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
  Buffer<float> logits_;
  std::map<std::pair<std::string, int>, Buffer<float>> acts_;
  struct Scratch {
    Buffer<float> dres, dnorm, dact, dgate, dup, dq, dk, dv, dkq, pre, dpre;
  } scratch_;
};

}  // namespace samq
