// Model backward pass (model/backward.h): the engine's forward records activations through its
// hooks; backward walks the layers in reverse with the ops of backend/ops_backward.h.
#include "model/backward.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/ops_backward.h"
#include "core/error.h"
#include "model/forward.h"

namespace samq {

namespace {

Tensor zero_like(const Tensor& t) {
  Tensor g;
  g.name = t.name;
  g.type = GgmlType::F32;
  g.rows = t.rows;
  g.cols = t.cols;
  g.owned = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(t.rows * t.cols) * sizeof(float), 0);
  g.data = g.owned->data();
  return g;
}

float* grad_ptr(ModelWeights* g, const Tensor& w) {
  if (!g || !w.present()) return nullptr;
  Tensor* found = nullptr;
  for_each_tensor(*g, [&](Tensor& t) {
    if (!found && t.name == w.name) found = &t;
  });
  if (!found || !found->owned) return nullptr;
  return reinterpret_cast<float*>(found->owned->data());
}

const float* opt_f32(const ModelGradient& mg, const Tensor& t) {
  return t.present() ? mg.weight_f32(t) : nullptr;
}

}  // namespace

ModelWeights make_gradient_buffers(const ModelWeights& w) {
  ModelWeights g = w;
  for_each_tensor(g, [](Tensor& t) { t = zero_like(t); });
  return g;
}

void zero_gradients(ModelWeights& g) {
  for_each_tensor(g, [](Tensor& t) {
    if (t.owned) std::fill(t.owned->begin(), t.owned->end(), uint8_t(0));
  });
}

ModelGradient::ModelGradient(const Model& m, const Ops& ops) : m_(m), ops_(ops) {}

const float* ModelGradient::weight_f32(const Tensor& t) const {
  if (t.type == GgmlType::F32) return reinterpret_cast<const float*>(t.data);
  auto it = f32_.find(t.name);
  if (it == f32_.end() || it->second.first != t.data) {
    auto& e = f32_[t.name];
    e.first = t.data;
    e.second = m_.tensor_f32(t);
    return e.second.data();
  }
  return it->second.second.data();
}

const std::vector<float>& ModelGradient::activation(std::string_view name, int layer) const {
  auto it = acts_.find({std::string(name), layer});
  if (it == acts_.end())
    fail("backward: activation '{}' of layer {} was not recorded by the forward pass", name, layer);
  return it->second;
}

const std::vector<float>& ModelGradient::forward(std::span<const int32_t> tokens) {
  tokens_.assign(tokens.begin(), tokens.end());
  acts_.clear();
  ForwardHooks hooks;
  hooks.on_activation = [&](std::string_view name, int layer, const float* data, int64_t rows,
                            int64_t cols) {
    if (name == "logits") return;  // kept by the batch itself
    auto& v = acts_[{std::string(name), layer}];
    v.assign(data, data + rows * cols);
  };
  KvCache cache(m_, int64_t(tokens_.size()));
  Batch b;
  b.add(&cache, tokens_, /*all_logits=*/true);
  ForwardOptions opt;
  opt.hooks = &hooks;
  samq::forward(m_, ops_, b, opt);
  logits_ = std::move(b.seqs[0].logits);
  return logits_;
}

void ModelGradient::backward(const float* dlogits, ModelWeights* grads, const BackwardHooks* hooks) {
  const ModelHparams& hp = m_.hparams;
  const ModelWeights& W = m_.weights;
  const int64_t n = n_tokens(), d = hp.n_embd, hd = hp.head_dim;
  const int64_t nq = hp.n_embd_q(), nkv = hp.n_embd_kv(), nff = hp.n_ff;
  if (n == 0) fail("backward called before forward");
  auto linear = [&](const Tensor& w, const Tensor* bias, const float* x, const float* dy, float* dx) {
    matmul_backward(x, dy, n, weight_f32(w), w.rows, w.cols, dx, grad_ptr(grads, w),
                    bias && bias->present() ? grad_ptr(grads, *bias) : nullptr);
    if (hooks && hooks->on_linear) hooks->on_linear(w, x, dy, n);
  };

  // logits = result_norm W_out^T; result_norm = rms_norm(l_out[last]) * output_norm
  std::vector<float> dres(static_cast<size_t>(n * d), 0.0f), dnorm(static_cast<size_t>(n * d), 0.0f);
  const Tensor& head = W.lm_head();
  linear(head, nullptr, activation("result_norm", -1).data(), dlogits, dnorm.data());
  const int last = int(hp.n_layer) - 1;
  const auto& final_in = activation("l_out", last);
  rms_norm_backward(ops_, final_in.data(), dnorm.data(), n, d, opt_f32(*this, W.output_norm),
                    hp.rms_eps, dres.data(), grad_ptr(grads, W.output_norm));

  std::vector<int32_t> pos(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) pos[t] = int32_t(t);
  const RopeParams rope = rope_params(m_);
  std::vector<float> dact(static_cast<size_t>(n * nff)), dgate(static_cast<size_t>(n * nff)), dup(static_cast<size_t>(n * nff));
  std::vector<float> dq(static_cast<size_t>(n * nq)), dk(static_cast<size_t>(n * nkv)), dv(static_cast<size_t>(n * nkv));
  std::vector<float> dkq(static_cast<size_t>(n * nq)), probs(static_cast<size_t>(hp.n_head * n * n)), scratch(static_cast<size_t>(n * nq));

  for (int l = last; l >= 0; --l) {
    const LayerWeights& L = W.layers[l];
    // ---- FFN: l_out = ffn_inp + down(swiglu(gate(xn), up(xn))), xn = rms_norm(ffn_inp)
    // dres is dL/dl_out; it flows unchanged into dL/dffn_inp (residual) plus the norm's path.
    std::fill(dact.begin(), dact.end(), 0.0f);
    linear(L.ffn_down, nullptr, activation("ffn_act", l).data(), dres.data(), dact.data());
    std::fill(dgate.begin(), dgate.end(), 0.0f);
    std::fill(dup.begin(), dup.end(), 0.0f);
    swiglu_backward(activation("gate", l).data(), activation("up", l).data(), dact.data(), n * nff,
                    dgate.data(), dup.data());
    std::fill(dnorm.begin(), dnorm.end(), 0.0f);
    const float* xn = activation("ffn_norm", l).data();
    linear(L.ffn_gate, nullptr, xn, dgate.data(), dnorm.data());
    linear(L.ffn_up, nullptr, xn, dup.data(), dnorm.data());
    rms_norm_backward(ops_, activation("ffn_inp", l).data(), dnorm.data(), n, d,
                      opt_f32(*this, L.ffn_norm), hp.rms_eps, dres.data(), grad_ptr(grads, L.ffn_norm));

    // ---- attention: ffn_inp = attn_inp + W_o attention(q, k, v)
    std::fill(dkq.begin(), dkq.end(), 0.0f);
    linear(L.attn_output, &L.attn_output_bias, activation("kq_out", l).data(), dres.data(), dkq.data());
    const auto& q = activation("q", l);
    const auto& k = activation("k", l);
    const auto& v = activation("v", l);
    AttentionArgs a;
    a.n_tokens = n;
    a.n_kv = n;
    a.n_head = hp.n_head;
    a.n_head_kv = hp.n_head_kv;
    a.head_dim = hd;
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.pos = pos.data();
    a.scale = 1.0f / std::sqrt(float(hd));
    a.out = scratch.data();
    a.probs = probs.data();
    ops_.attention(a);  // recompute the softmax weights
    std::fill(dq.begin(), dq.end(), 0.0f);
    std::fill(dk.begin(), dk.end(), 0.0f);
    std::fill(dv.begin(), dv.end(), 0.0f);
    attention_backward(a, probs.data(), dkq.data(), dq.data(), dk.data(), dv.data());
    rope_backward(ops_, dq.data(), n, hp.n_head, hd, pos.data(), rope);
    rope_backward(ops_, dk.data(), n, hp.n_head_kv, hd, pos.data(), rope);
    const float* xa = activation("attn_norm", l).data();
    if (L.attn_q_norm.present() || L.attn_k_norm.present()) {
      // qwen3: q = rope(rms_norm_per_head(xa W_q^T + b_q) * q_norm); the pre-norm q is
      // recomputed through the forward matmul.
      auto through_norm = [&](const Tensor& w, const Tensor& b, const Tensor& nw, int64_t heads,
                              std::vector<float>& dgrad) {
        if (!nw.present()) return;
        std::vector<float> pre(static_cast<size_t>(n * w.rows)), dpre(static_cast<size_t>(n * w.rows), 0.0f);
        ops_.matmul(xa, n, w.view(), b.present() ? weight_f32(b) : nullptr, pre.data());
        rms_norm_backward(ops_, pre.data(), dgrad.data(), n * heads, hd, weight_f32(nw), hp.rms_eps,
                          dpre.data(), grad_ptr(grads, nw));
        dgrad.swap(dpre);
      };
      through_norm(L.attn_q, L.attn_q_bias, L.attn_q_norm, hp.n_head, dq);
      through_norm(L.attn_k, L.attn_k_bias, L.attn_k_norm, hp.n_head_kv, dk);
    }
    std::fill(dnorm.begin(), dnorm.end(), 0.0f);
    linear(L.attn_q, &L.attn_q_bias, xa, dq.data(), dnorm.data());
    linear(L.attn_k, &L.attn_k_bias, xa, dk.data(), dnorm.data());
    linear(L.attn_v, &L.attn_v_bias, xa, dv.data(), dnorm.data());
    rms_norm_backward(ops_, activation("attn_inp", l).data(), dnorm.data(), n, d,
                      opt_f32(*this, L.attn_norm), hp.rms_eps, dres.data(), grad_ptr(grads, L.attn_norm));
  }
  // inp_embd = token_embd[tokens]
  if (float* dE = grad_ptr(grads, W.token_embd)) embedding_backward(tokens_.data(), dres.data(), n, d, dE);
  if (hooks && hooks->on_embedding) hooks->on_embedding(W.token_embd, tokens_.data(), dres.data(), n);
}

}  // namespace samq
