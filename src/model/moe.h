// The mixture-of-experts FFN of a qwen3moe layer over the op table (backend/ops.h), forward and
// backward, called by model/forward.cpp and model/backward.cpp for layers with a router.
//
//   logits = x W_r^T                                   (T, n_expert), router ffn_gate_inp (f32)
//   ids, w = top-k of softmax(logits) (renormalised)   (T, k)          Ops::moe_route
//   out[t] = sum_j w[t,j] * down_e(silu(gate_e(x_t)) * up_e(x_t)),  e = ids[t,j]
//
// Experts run one at a time on the rows routed to them (gathered, matmul'd with matrix e of the
// stacked 3-D tensors, scattered back with their weight), in expert order, each expert's rows in
// token order: the summation order of HF transformers' Qwen3MoeSparseMoeBlock. The routing lists
// are built on the host from the downloaded ids (T x k int32 per layer), so the walk is the same
// on every backend; the three MoE ops have host defaults only (a device backend fails naming
// the op).
//
// Hooks (model/forward.h): "ffn_moe_logits" (T, n_expert) through on_activation; per expert
// through on_expert: "ffn_moe_inp" (rows routed to e, n_embd) = the input of gate/up matrix e,
// "ffn_moe_act" (rows, n_ff_exp) = the input of down matrix e.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/buffer.h"
#include "backend/ops.h"
#include "backend/ops_backward.h"

namespace samq {

class Model;
struct LayerWeights;
struct ForwardHooks;
struct BackwardHooks;
class GradientBuffers;

// Rows of T tokens routed to each expert: for expert e, entries off[e] .. off[e+1]-1 of rows
// (token index) and slots (t * k + j: where its weight sits in the (T, k) weights), token order.
struct MoeRouting {
  std::vector<int32_t> rows, slots;
  std::vector<int64_t> off;
  int64_t count(int64_t e) const { return off[size_t(e) + 1] - off[size_t(e)]; }
};
MoeRouting moe_routing(const std::vector<int32_t>& ids, int64_t T, int64_t n_expert, int64_t k);

// Work buffers of one MoE layer call (grow only), in the backend's memory.
struct MoeWorkspace {
  Buffer<float> logits, weights, xe, gate, up, ye, we, dye, dwe, dweights, dlogits, dact, dgate, dup, dxe;
  Buffer<int32_t> ids, rows, slots;
  std::vector<int32_t> ids_host;
  MoeRouting routing;
};

// out (T, n_embd) := the MoE FFN of x (T, n_embd) for layer `layer` (overwritten, not added).
void moe_ffn_forward(const Model& m, const Ops& ops, const LayerWeights& L, int layer, const float* x, int64_t T,
                     float* out, MoeWorkspace& ws, const ForwardHooks* hooks);

// Gradient of the MoE FFN given its input x (T, n_embd) (recomputing the routing and the
// experts) and dout (T, n_embd): dx += dL/dx; the expert, router gradients are accumulated into
// grads (matrix e of a stacked tensor at rows [e * mat_rows, ...)); hooks->on_expert_linear sees
// each expert matrix's input rows and output gradient, hooks->on_linear the router's.
void moe_ffn_backward(const Model& m, const BackwardOps& bops, const LayerWeights& L, int layer, const float* x,
                      const float* dout, int64_t T, float* dx, GradientBuffers* grads, const BackwardHooks* hooks,
                      MoeWorkspace& ws);

}  // namespace samq
