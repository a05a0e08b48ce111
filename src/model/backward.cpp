// Model backward pass (model/backward.h): the engine's forward records activations through its
// hooks into backend buffers; backward walks the layers in reverse over the BackwardOps table.
// Nothing here reads or writes activation bytes: the same walk runs on every backend.
#include "model/backward.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/forward.h"

namespace samq {

GradientBuffers::GradientBuffers(const std::vector<const Tensor*>& tensors, const Ops& ops) {
  for (const Tensor* t : tensors) {
    if (!t || !t->present()) continue;
    Entry e;
    e.name = t->name;
    e.rows = t->rows;
    e.cols = t->cols;
    e.g = Buffer<float>(ops, t->rows * t->cols);
    e.g.zero();
    entries_.push_back(std::move(e));
  }
}

GradientBuffers::GradientBuffers(const ModelWeights& w, const Ops& ops) {
  for_each_tensor(w, [&](const Tensor& t) {
    Entry e;
    e.name = t.name;
    e.rows = t.rows;
    e.cols = t.cols;
    e.g = Buffer<float>(ops, t.rows * t.cols);
    e.g.zero();
    entries_.push_back(std::move(e));
  });
}

void GradientBuffers::zero() {
  for (auto& e : entries_) e.g.zero();
}

float* GradientBuffers::find(const std::string& name) {
  for (auto& e : entries_)
    if (e.name == name) return e.g.data();
  return nullptr;
}

std::vector<float> GradientBuffers::to_host(const std::string& name) {
  for (auto& e : entries_)
    if (e.name == name) return e.g.to_host();
  fail("gradient buffers: no tensor {}", name);
}

namespace {

float* grad_ptr(GradientBuffers* g, const Tensor& w) {
  if (!g || !w.present()) return nullptr;
  return g->find(w.name);
}

const float* opt_f32(const Tensor& t) { return t.present() ? backend_f32(t) : nullptr; }

WeightView wv(const Model& m, const Tensor& t) {
  WeightView v = t.view();
  v.ggml_act_rounding = m.ggml_numerics;
  return v;
}

}  // namespace

ModelGradient::ModelGradient(const Model& m, const BackwardOps& bops) : m_(m), bops_(bops), ops_(bops.ops()) {
  if (!ops_.host_memory() && m.ops != &ops_)
    fail("backward: the model's weights are prepared for {}, not {}", m.ops->name(), ops_.name());
}

const float* ModelGradient::activation(std::string_view name, int layer) const {
  auto it = acts_.find({std::string(name), layer});
  if (it == acts_.end())
    fail("backward: activation '{}' of layer {} was not recorded by the forward pass", name, layer);
  return it->second.data();
}

ForwardHooks ModelGradient::recorder() {
  ForwardHooks hooks;
  hooks.on_activation = [this](std::string_view name, int layer, const float* data, int64_t rows, int64_t cols) {
    if (name == "logits") return;  // kept in logits_
    Buffer<float>& b = acts_[{std::string(name), layer}];
    b.reserve(ops_, rows * cols);
    ops_.copy(b.data(), data, sizeof(float) * size_t(rows * cols));
  };
  return hooks;
}

const float* ModelGradient::forward(std::span<const int32_t> tokens) {
  tokens_.assign(tokens.begin(), tokens.end());
  const int64_t n = int64_t(tokens_.size());
  const ForwardHooks hooks = recorder();
  KvCache cache(m_, n, ops_);
  Batch b;
  b.add(&cache, tokens_, /*all_logits=*/true);
  ForwardOptions opt;
  opt.hooks = &hooks;
  opt.logits_out = logits_.reserve(ops_, n * m_.hparams.n_vocab);
  samq::forward(m_, ops_, b, opt);
  return logits_.data();
}

const float* ModelGradient::forward_head(std::span<const int32_t> tokens, const float* x_top) {
  tokens_.assign(tokens.begin(), tokens.end());
  const int64_t n = int64_t(tokens_.size()), E = m_.hparams.n_embd;
  const int last = int(m_.hparams.n_layer) - 1;
  Buffer<float>& top = acts_[{"l_out", last}];
  top.reserve(ops_, n * E);
  ops_.copy(top.data(), x_top, sizeof(float) * size_t(n * E));
  const ForwardHooks hooks = recorder();
  KvCache cache(m_, n, ops_);  // no layer runs: no rows are allocated
  Batch b;
  b.add(&cache, tokens_, /*all_logits=*/true);
  ForwardOptions opt;
  opt.hooks = &hooks;
  opt.start_layer = int(m_.hparams.n_layer);
  opt.start_input = top.data();
  opt.logits_out = logits_.reserve(ops_, n * m_.hparams.n_vocab);
  samq::forward(m_, ops_, b, opt);
  return logits_.data();
}

void ModelGradient::forward_layer(int layer, std::span<const int32_t> tokens, const float* x_in) {
  tokens_.assign(tokens.begin(), tokens.end());
  const int64_t n = int64_t(tokens_.size());
  for (auto it = acts_.begin(); it != acts_.end();)  // keep only this layer's activations
    it = it->first.second >= 0 && it->first.second != layer ? acts_.erase(it) : std::next(it);
  const ForwardHooks hooks = recorder();
  KvCache cache(m_, n, ops_);
  Batch b;
  b.add(&cache, tokens_, /*all_logits=*/true);
  ForwardOptions opt;
  opt.hooks = &hooks;
  opt.start_layer = layer;
  opt.end_layer = layer + 1;
  // Layer 0 recomputes the embedding lookup itself (the same rows as x_in).
  opt.start_input = layer > 0 ? x_in : nullptr;
  samq::forward(m_, ops_, b, opt);
}

std::vector<float> ModelGradient::logits_host() const { return logits_.to_host(n_tokens() * m_.hparams.n_vocab); }

const int32_t* ModelGradient::positions() {
  const int64_t n = n_tokens();
  std::vector<int32_t> pos(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) pos[t] = int32_t(t);
  pos_host_ = pos;
  if (ops_.host_memory()) return pos_host_.data();
  pos_b_.reserve(ops_, n);
  pos_b_.upload(pos.data(), n);
  return pos_b_.data();
}

void ModelGradient::backward(const float* dlogits, GradientBuffers* grads, const BackwardHooks* hooks) {
  const int64_t n = n_tokens(), d = m_.hparams.n_embd;
  if (n == 0) fail("backward called before forward");
  Buffer<float>& dres = scratch_.dres;
  dres.reserve(ops_, n * d);
  backward_head(dlogits, dres.data(), grads, hooks);
  for (int l = int(m_.hparams.n_layer) - 1; l >= 0; --l) backward_layer(l, dres.data(), grads, hooks);
  backward_embedding(dres.data(), grads, hooks);
}

void ModelGradient::backward_head(const float* dlogits, float* dres, GradientBuffers* grads,
                                  const BackwardHooks* hooks) {
  const ModelHparams& hp = m_.hparams;
  const ModelWeights& W = m_.weights;
  const int64_t n = n_tokens(), d = hp.n_embd;
  if (n == 0) fail("backward called before forward");
  // logits = result_norm W_out^T; result_norm = rms_norm(l_out[last]) * output_norm
  Buffer<float>& dnorm = scratch_.dnorm;
  dnorm.reserve(ops_, n * d);
  ops_.zero(dres, sizeof(float) * size_t(n * d));
  dnorm.zero();
  const Tensor& head = W.lm_head();
  bops_.matmul_backward(activation("result_norm", -1), dlogits, n, wv(m_, head), dnorm.data(), grad_ptr(grads, head),
                        nullptr);
  if (hooks && hooks->on_linear) hooks->on_linear(head, activation("result_norm", -1), dlogits, n);
  const int last = int(hp.n_layer) - 1;
  bops_.rms_norm_backward(activation("l_out", last), dnorm.data(), n, d, opt_f32(W.output_norm), hp.rms_eps, dres,
                          grad_ptr(grads, W.output_norm));
}

void ModelGradient::backward_layer(int l, float* dres, GradientBuffers* grads, const BackwardHooks* hooks) {
  const ModelHparams& hp = m_.hparams;
  const BackwardOps& B = bops_;
  const int64_t n = n_tokens(), d = hp.n_embd, hd = hp.head_dim;
  const int64_t nq = hp.n_embd_q(), nkv = hp.n_embd_kv(), nff = hp.n_ff;
  if (n == 0) fail("backward called before forward");
  auto linear = [&](const Tensor& w, const Tensor* bias, const float* x, const float* dy, float* dx) {
    B.matmul_backward(x, dy, n, wv(m_, w), dx, grad_ptr(grads, w),
                      bias && bias->present() ? grad_ptr(grads, *bias) : nullptr);
    if (hooks && hooks->on_linear) hooks->on_linear(w, x, dy, n);
  };
  // Work buffers, kept across calls (grow only).
  Scratch& w = scratch_;
  auto buf = [&](Buffer<float>& b, int64_t count) -> Buffer<float>& {
    b.reserve(ops_, count);
    return b;
  };
  Buffer<float>& dnorm = buf(w.dnorm, n * d);
  const int32_t* pos_p = positions();
  const RopeParams rope = rope_params(m_);
  Buffer<float>&dact = buf(w.dact, n * nff), &dgate = buf(w.dgate, n * nff), &dup = buf(w.dup, n * nff);
  Buffer<float>&dq = buf(w.dq, n * nq), &dk = buf(w.dk, n * nkv), &dv = buf(w.dv, n * nkv), &dkq = buf(w.dkq, n * nq);

  const LayerWeights& L = m_.weights.layers[size_t(l)];
  // ---- FFN: l_out = ffn_inp + down(swiglu(gate(xn), up(xn))), xn = rms_norm(ffn_inp)
  // dres is dL/dl_out; it flows unchanged into dL/dffn_inp (residual) plus the norm's path.
  const float* xn = activation("ffn_norm", l);
  if (L.ffn_gate_inp.present()) {
    dnorm.zero();
    moe_ffn_backward(m_, B, L, l, xn, dres, n, dnorm.data(), grads, hooks, scratch_.moe);
  } else {
    dact.zero();
    linear(L.ffn_down, nullptr, activation("ffn_act", l), dres, dact.data());
    dgate.zero();
    dup.zero();
    B.swiglu_backward(activation("gate", l), activation("up", l), dact.data(), n * nff, dgate.data(), dup.data());
    dnorm.zero();
    if (!L.ffn_gate.present()) {
      // phi3: the gradient of the fused (gate | up) output, then one matmul backward
      Buffer<float>& dfused = buf(w.dfused, n * 2 * nff);
      ops_.copy_cols(dfused.data(), 2 * nff, dgate.data(), nff, n, nff);
      ops_.copy_cols(dfused.data() + nff, 2 * nff, dup.data(), nff, n, nff);
      linear(L.ffn_up, nullptr, xn, dfused.data(), dnorm.data());
    } else {
      linear(L.ffn_gate, nullptr, xn, dgate.data(), dnorm.data());
      linear(L.ffn_up, nullptr, xn, dup.data(), dnorm.data());
    }
  }
  B.rms_norm_backward(activation("ffn_inp", l), dnorm.data(), n, d, opt_f32(L.ffn_norm), hp.rms_eps, dres,
                      grad_ptr(grads, L.ffn_norm));

  // ---- attention: ffn_inp = attn_inp + W_o attention(q, k, v)
  dkq.zero();
  linear(L.attn_output, &L.attn_output_bias, activation("kq_out", l), dres, dkq.data());
  AttentionArgs a;
  a.n_tokens = n;
  a.n_kv = n;
  a.n_head = hp.n_head;
  a.n_head_kv = hp.n_head_kv;
  a.head_dim = hd;
  a.q = activation("q", l);
  a.k = activation("k", l);
  a.v = activation("v", l);
  a.pos = pos_p;
  a.window = hp.n_swa;
  a.scale = 1.0f / std::sqrt(float(hd));
  dq.zero();
  dk.zero();
  dv.zero();
  B.attention_backward(a, dkq.data(), dq.data(), dk.data(), dv.data());
  B.rope_backward(dq.data(), n, hp.n_head, hd, pos_p, rope);
  B.rope_backward(dk.data(), n, hp.n_head_kv, hd, pos_p, rope);
  const float* xa = activation("attn_norm", l);
  if (L.attn_q_norm.present() || L.attn_k_norm.present()) {
    // qwen3: q = rope(rms_norm_per_head(xa W_q^T + b_q) * q_norm); the pre-norm q is
    // recomputed through the forward matmul.
    auto through_norm = [&](const Tensor& wt, const Tensor& b, const Tensor& nw, int64_t heads, Buffer<float>& dgrad) {
      if (!nw.present()) return;
      Buffer<float>&pre = buf(scratch_.pre, n * wt.rows), &dpre = buf(scratch_.dpre, n * wt.rows);
      dpre.zero();
      ops_.matmul(xa, n, wv(m_, wt), opt_f32(b), pre.data());
      B.rms_norm_backward(pre.data(), dgrad.data(), n * heads, hd, backend_f32(nw), hp.rms_eps, dpre.data(),
                          grad_ptr(grads, nw));
      std::swap(dgrad, dpre);
    };
    through_norm(L.attn_q, L.attn_q_bias, L.attn_q_norm, hp.n_head, dq);
    through_norm(L.attn_k, L.attn_k_bias, L.attn_k_norm, hp.n_head_kv, dk);
  }
  dnorm.zero();
  if (L.attn_qkv.present()) {
    // phi3: the gradient of the fused (q | k | v) output, then one matmul backward
    const int64_t nqkv = nq + 2 * nkv;
    Buffer<float>& dfused = buf(w.dfused, n * nqkv);
    ops_.copy_cols(dfused.data(), nqkv, dq.data(), nq, n, nq);
    ops_.copy_cols(dfused.data() + nq, nqkv, dk.data(), nkv, n, nkv);
    ops_.copy_cols(dfused.data() + nq + nkv, nqkv, dv.data(), nkv, n, nkv);
    linear(L.attn_qkv, nullptr, xa, dfused.data(), dnorm.data());
  } else {
    linear(L.attn_q, &L.attn_q_bias, xa, dq.data(), dnorm.data());
    linear(L.attn_k, &L.attn_k_bias, xa, dk.data(), dnorm.data());
    linear(L.attn_v, &L.attn_v_bias, xa, dv.data(), dnorm.data());
  }
  B.rms_norm_backward(activation("attn_inp", l), dnorm.data(), n, d, opt_f32(L.attn_norm), hp.rms_eps, dres,
                      grad_ptr(grads, L.attn_norm));
}

void ModelGradient::backward_embedding(const float* dres, GradientBuffers* grads, const BackwardHooks* hooks) {
  const ModelWeights& W = m_.weights;
  const int64_t n = n_tokens(), d = m_.hparams.n_embd;
  // inp_embd = token_embd[tokens]
  if (float* dE = grad_ptr(grads, W.token_embd)) {
    const int32_t* ids = tokens_.data();
    if (!ops_.host_memory()) {
      tokens_b_.reserve(ops_, n);
      tokens_b_.upload(tokens_.data(), n);
      ids = tokens_b_.data();
    }
    bops_.embedding_backward(ids, dres, n, d, dE);
  }
  if (hooks && hooks->on_embedding) hooks->on_embedding(W.token_embd, tokens_.data(), dres, n);
}

}  // namespace samq
