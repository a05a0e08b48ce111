// The MoE FFN forward and backward over the op tables (see moe.h).
#include "model/moe.h"

#include "core/error.h"
#include "model/backward.h"
#include "model/forward.h"
#include "model/model.h"

namespace samq {

MoeRouting moe_routing(const std::vector<int32_t>& ids, int64_t T, int64_t n_expert, int64_t k) {
  MoeRouting r;
  r.off.assign(size_t(n_expert) + 1, 0);
  for (int64_t i = 0; i < T * k; ++i) {
    const int32_t e = ids[size_t(i)];
    if (e < 0 || e >= n_expert) fail("moe: expert id {} out of range ({} experts)", e, n_expert);
    ++r.off[size_t(e) + 1];
  }
  for (int64_t e = 0; e < n_expert; ++e) r.off[size_t(e) + 1] += r.off[size_t(e)];
  r.rows.resize(size_t(T * k));
  r.slots.resize(size_t(T * k));
  std::vector<int64_t> at(r.off.begin(), r.off.end() - 1);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const size_t e = size_t(ids[size_t(t * k + j)]);
      r.rows[size_t(at[e])] = int32_t(t);
      r.slots[size_t(at[e])] = int32_t(t * k + j);
      ++at[e];
    }
  return r;
}

namespace {

WeightView mat_view(const Model& m, const Tensor& t, int64_t e) {
  WeightView v = t.mat(e);
  v.ggml_act_rounding = m.ggml_numerics;
  return v;
}

// Router, routing lists (host) and their copies in backend memory.
void route(const Model& m, const Ops& ops, const LayerWeights& L, const float* x, int64_t T, MoeWorkspace& ws) {
  const ModelHparams& h = m.hparams;
  const int64_t NE = h.n_expert, K = h.n_expert_used;
  float* logits = ws.logits.reserve(ops, T * NE);
  // (T, E) x (n_expert, E)^T -> (T, n_expert)
  WeightView r = L.ffn_gate_inp.view();
  r.ggml_act_rounding = m.ggml_numerics;
  ops.matmul(x, T, r, nullptr, logits);
  int32_t* ids = ws.ids.reserve(ops, T * K);
  ops.moe_route(logits, T, NE, K, h.expert_weights_norm, ids, ws.weights.reserve(ops, T * K));
  ws.ids_host.resize(size_t(T * K));
  ops.download(ws.ids_host.data(), ids, sizeof(int32_t) * size_t(T * K));
  ws.routing = moe_routing(ws.ids_host, T, NE, K);
  ws.rows.reserve(ops, T * K);
  ws.slots.reserve(ops, T * K);
  ws.rows.upload(ws.routing.rows.data(), T * K);
  ws.slots.upload(ws.routing.slots.data(), T * K);
}

}  // namespace

void moe_ffn_forward(const Model& m, const Ops& ops, const LayerWeights& L, int layer, const float* x, int64_t T,
                     float* out, MoeWorkspace& ws, const ForwardHooks* hooks) {
  const ModelHparams& h = m.hparams;
  const int64_t E = h.n_embd, F = h.n_ff_exp, NE = h.n_expert;
  route(m, ops, L, x, T, ws);
  if (hooks && hooks->on_activation) hooks->on_activation("ffn_moe_logits", layer, ws.logits.data(), T, NE);
  const bool expert_hook = hooks && hooks->on_expert;
  ops.zero(out, sizeof(float) * size_t(T * E));
  for (int64_t e = 0; e < NE; ++e) {
    const int64_t n = ws.routing.count(e);
    if (n == 0) continue;
    const int32_t* rows = ws.rows.data() + ws.routing.off[size_t(e)];
    const int32_t* slots = ws.slots.data() + ws.routing.off[size_t(e)];
    float* xe = ws.xe.reserve(ops, n * E);
    float* g = ws.gate.reserve(ops, n * F);
    float* u = ws.up.reserve(ops, n * F);
    float* ye = ws.ye.reserve(ops, n * E);
    float* we = ws.we.reserve(ops, n);
    ops.gather_rows(x, E, rows, n, xe);
    if (expert_hook) hooks->on_expert("ffn_moe_inp", layer, int(e), xe, n, E);
    // (n, E) x (F, E)^T -> (n, F) with expert e's gate and up
    ops.matmul(xe, n, mat_view(m, L.ffn_gate_exps, e), nullptr, g);
    ops.matmul(xe, n, mat_view(m, L.ffn_up_exps, e), nullptr, u);
    ops.swiglu(g, u, n * F, g);
    if (expert_hook) hooks->on_expert("ffn_moe_act", layer, int(e), g, n, F);
    // (n, F) x (E, F)^T -> (n, E)
    ops.matmul(g, n, mat_view(m, L.ffn_down_exps, e), nullptr, ye);
    ops.gather_rows(ws.weights.data(), 1, slots, n, we);
    ops.scatter_add_rows(ye, E, rows, we, n, out);
  }
}

void moe_ffn_backward(const Model& m, const BackwardOps& B, const LayerWeights& L, int layer, const float* x,
                      const float* dout, int64_t T, float* dx, GradientBuffers* grads, const BackwardHooks* hooks,
                      MoeWorkspace& ws) {
  (void)layer;
  const Ops& ops = B.ops();
  const ModelHparams& h = m.hparams;
  const int64_t E = h.n_embd, F = h.n_ff_exp, NE = h.n_expert, K = h.n_expert_used;
  route(m, ops, L, x, T, ws);
  float* dweights = ws.dweights.reserve(ops, T * K);
  ops.zero(dweights, sizeof(float) * size_t(T * K));
  auto grad_of = [&](const Tensor& t, int64_t e) -> float* {
    float* g = grads && t.present() ? grads->find(t.name) : nullptr;
    return g ? g + e * t.mat_rows() * t.cols : nullptr;
  };
  const bool hook = hooks && hooks->on_expert_linear;
  for (int64_t e = 0; e < NE; ++e) {
    const int64_t n = ws.routing.count(e);
    if (n == 0) continue;
    const int32_t* rows = ws.rows.data() + ws.routing.off[size_t(e)];
    const int32_t* slots = ws.slots.data() + ws.routing.off[size_t(e)];
    // Recompute expert e's forward on its rows.
    float* xe = ws.xe.reserve(ops, n * E);
    float* g = ws.gate.reserve(ops, n * F);
    float* u = ws.up.reserve(ops, n * F);
    float* act = ws.dact.reserve(ops, n * F);  // silu(g) * u, then reused below
    float* ye = ws.ye.reserve(ops, n * E);
    float* we = ws.we.reserve(ops, n);
    ops.gather_rows(x, E, rows, n, xe);
    ops.matmul(xe, n, mat_view(m, L.ffn_gate_exps, e), nullptr, g);
    ops.matmul(xe, n, mat_view(m, L.ffn_up_exps, e), nullptr, u);
    ops.swiglu(g, u, n * F, act);
    ops.matmul(act, n, mat_view(m, L.ffn_down_exps, e), nullptr, ye);
    ops.gather_rows(ws.weights.data(), 1, slots, n, we);
    // out[rows] += we * ye: dye = we * dout[rows], dwe = ye . dout[rows]
    float* dye = ws.dye.reserve(ops, n * E);
    float* dwe = ws.dwe.reserve(ops, n);
    ops.zero(dye, sizeof(float) * size_t(n * E));
    ops.zero(dwe, sizeof(float) * size_t(n));
    B.scatter_add_rows_backward(ye, dout, E, rows, we, n, dye, dwe);
    ops.scatter_add_rows(dwe, 1, slots, nullptr, n, dweights);
    // ye = act Wd_e^T
    float* da = ws.dgate.reserve(ops, n * F);  // d(act)
    ops.zero(da, sizeof(float) * size_t(n * F));
    B.matmul_backward(act, dye, n, mat_view(m, L.ffn_down_exps, e), da, grad_of(L.ffn_down_exps, e), nullptr);
    if (hook) hooks->on_expert_linear(L.ffn_down_exps, int(e), act, dye, n);
    float* dg = ws.dup.reserve(ops, n * F);
    float* du = ws.dact.reserve(ops, n * F);  // act is no longer needed
    ops.zero(dg, sizeof(float) * size_t(n * F));
    ops.zero(du, sizeof(float) * size_t(n * F));
    B.swiglu_backward(g, u, da, n * F, dg, du);
    float* dxe = ws.dxe.reserve(ops, n * E);
    ops.zero(dxe, sizeof(float) * size_t(n * E));
    B.matmul_backward(xe, dg, n, mat_view(m, L.ffn_gate_exps, e), dxe, grad_of(L.ffn_gate_exps, e), nullptr);
    B.matmul_backward(xe, du, n, mat_view(m, L.ffn_up_exps, e), dxe, grad_of(L.ffn_up_exps, e), nullptr);
    if (hook) {
      hooks->on_expert_linear(L.ffn_gate_exps, int(e), xe, dg, n);
      hooks->on_expert_linear(L.ffn_up_exps, int(e), xe, du, n);
    }
    ops.scatter_add_rows(dxe, E, rows, nullptr, n, dx);
  }
  // Router: weights = route(softmax(logits)), logits = x W_r^T.
  float* dlogits = ws.dlogits.reserve(ops, T * NE);
  ops.zero(dlogits, sizeof(float) * size_t(T * NE));
  B.moe_route_backward(ws.logits.data(), ws.ids.data(), dweights, T, NE, K, h.expert_weights_norm, dlogits);
  WeightView r = L.ffn_gate_inp.view();
  r.ggml_act_rounding = m.ggml_numerics;
  B.matmul_backward(x, dlogits, T, r, dx, grads ? grads->find(L.ffn_gate_inp.name) : nullptr, nullptr);
  if (hooks && hooks->on_linear) hooks->on_linear(L.ffn_gate_inp, x, dlogits, T);
}

}  // namespace samq
