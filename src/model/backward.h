// The model's backward pass: gradients of a loss over the logits with respect to every weight
// tensor (linear weights, token embeddings, output head, norms, biases, q/k norms) for the
// llama / mistral / qwen2 / qwen3 forward of model/forward.h, on CPU.
//
//   ModelGradient mg(model, cpu_ops());
//   const auto& logits = mg.forward(tokens);                 // (n, n_vocab), one fresh sequence
//   softmax_cross_entropy_backward(ops, logits.data(), labels, n, n_vocab, 1, dlogits, nullptr);
//   ModelWeights grads = make_gradient_buffers(model.weights);  // same struct as the weights
//   mg.backward(dlogits.data(), &grads, &hooks);             // accumulates dL/dW into grads
//
// The forward is the engine's own (model/forward.h): its activation hooks record every
// intermediate keyed by (name, layer), and the backward walks the layers in reverse with the
// *_backward ops of backend/ops_backward.h, recomputing through the forward op table what the
// hooks do not give (rms_norm's rstd, attention's softmax weights, pre-norm q/k of qwen3).
// Hooks let the analysis see, for every linear weight W (y = x W^T), its input x and output
// gradient dy without keeping the full weight gradient (the factored Fisher and imatrix need
// only those).
//
// Non-goals: training (no optimizer, no mixed precision); batching several sequences (one
// sequence of up to n_ctx tokens per call keeps sgemm shapes large enough already).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backend/ops.h"
#include "model/model.h"

namespace samq {

struct BackwardHooks {
  // Called once per linear weight during backward: x (n, w.cols) is the weight's input and
  // dy (n, w.rows) the gradient of the loss w.r.t. its output (bias included).
  std::function<void(const Tensor& w, const float* x, const float* dy, int64_t n)> on_linear;
  // Called once for the token embedding lookup: ids (n) and dy (n, w.cols), the gradient
  // w.r.t. the looked-up rows.
  std::function<void(const Tensor& w, const int32_t* ids, const float* dy, int64_t n)> on_embedding;
};

// Zeroed f32 tensors with the names and shapes of `w` (absent tensors stay absent).
ModelWeights make_gradient_buffers(const ModelWeights& w);
void zero_gradients(ModelWeights& g);

class ModelGradient {
 public:
  ModelGradient(const Model& m, const Ops& ops);

  // Forward of one fresh sequence at positions 0..n-1, keeping the activations backward needs.
  // Returns the logits (n, n_vocab). hooks (optional) also see every activation.
  const std::vector<float>& forward(std::span<const int32_t> tokens);

  // Backward from dlogits (n, n_vocab) of the last forward(). Gradients are accumulated into
  // grads (may be null when only the hooks are wanted; tensors absent there are skipped).
  void backward(const float* dlogits, ModelWeights* grads, const BackwardHooks* hooks = nullptr);

  // An activation recorded by the last forward(): (n, width), keyed as in model/forward.h.
  const std::vector<float>& activation(std::string_view name, int layer) const;
  int64_t n_tokens() const { return int64_t(tokens_.size()); }
  const Model& model() const { return m_; }

  // The f32 copy of a weight used by backward (weights in other types are dequantized once).
  const float* weight_f32(const Tensor& t) const;

 private:
  const Model& m_;
  const Ops& ops_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_;
  std::map<std::pair<std::string, int>, std::vector<float>> acts_;
  // dequantized copies of non-F32 weights, keyed by name and tagged with the source pointer
  mutable std::map<std::string, std::pair<const uint8_t*, std::vector<float>>> f32_;
};

}  // namespace samq
