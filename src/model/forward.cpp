// The transformer forward pass (llama / mistral / mixtral / qwen2 / qwen3 / qwen3moe / phi3), written once over the op
// table. See forward.h for the batching model, the hooks and resuming from a layer.
#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace samq {

KvCache::KvCache(const Model& m, int64_t n_ctx) : KvCache(m, n_ctx, *m.ops) {}

KvCache::KvCache(const Model& m, int64_t n_ctx, const Ops& ops)
    : f16(m.ggml_numerics), ops_(&ops), n_ctx_(n_ctx), width_(m.hparams.n_embd_kv()) {
  k_.resize(size_t(m.hparams.n_layer));
  v_.resize(size_t(m.hparams.n_layer));
}

float* KvCache::ensure(std::vector<Buffer<float>>& b, int64_t layer) {
  if (layer < 0 || layer >= int64_t(b.size())) fail("KV cache: no layer {} (model has {})", layer, b.size());
  if (b[size_t(layer)].empty()) b[size_t(layer)] = Buffer<float>(*ops_, n_ctx_ * width_);
  return b[size_t(layer)].data();
}

void KvCache::release_layer(int64_t layer) {
  if (layer < 0 || layer >= int64_t(k_.size())) return;
  k_[size_t(layer)] = Buffer<float>();
  v_[size_t(layer)] = Buffer<float>();
}

void KvCache::truncate(int64_t n) {
  if (n < 0 || n > n_past_) fail("KV cache: cannot truncate to {} tokens (holds {})", n, n_past_);
  n_past_ = n;
}

namespace {

void emit(const ForwardOptions& o, std::string_view name, int layer, const Buffer<float>& v, int64_t rows,
          int64_t cols) {
  if (o.hooks && o.hooks->on_activation) o.hooks->on_activation(name, layer, v.data(), rows, cols);
}

WeightView wv(const Model& m, const Tensor& t) {
  WeightView v = t.view();
  v.ggml_act_rounding = m.ggml_numerics;
  return v;
}

const float* opt_f32(const Tensor& t) { return t.present() ? backend_f32(t) : nullptr; }

// Activation buffers of forward(), per thread, in the backend's memory, grown and never shrunk:
// a decode step allocates nothing, and prefill buffers are not faulted in afresh on every call.
struct Workspace {
  Buffer<float> x, cur, q, k, v, kq, tmp, gate, up, sel, logits, fused;
  Buffer<int32_t> ids_b, pos_b;
  std::vector<int32_t> ids, pos;
  std::vector<int64_t> first;
  std::vector<std::pair<int64_t, int64_t>> runs;  // rows that need logits: (first row, count)
  MoeWorkspace moe;
};

// A (T, int) array for the ops: the host vector itself on host-memory backends, else a copy.
const int32_t* to_backend(const Ops& ops, const std::vector<int32_t>& v, Buffer<int32_t>& b) {
  if (ops.host_memory()) return v.data();
  b.reserve(ops, int64_t(v.size()));
  b.upload(v.data(), int64_t(v.size()));
  return b.data();
}

}  // namespace

void forward(const Model& m, const Ops& ops, Batch& batch, const ForwardOptions& opt) {
  const ModelHparams& h = m.hparams;
  const ModelWeights& w = m.weights;
  const int64_t E = h.n_embd, hd = h.head_dim, Hq = h.n_head, Hkv = h.n_head_kv;
  const int64_t Wq = h.n_embd_q(), Wkv = h.n_embd_kv(), F = h.n_ff, V = h.n_vocab;
  if (!ops.host_memory() && m.ops != &ops)
    fail("forward: the model's weights are prepared for {}, not {} (Model::load(path, ops))", m.ops->name(),
         ops.name());
  if (h.is_moe() && !ops.host_memory())
    fail("{}: mixture-of-experts models run on the CPU only (--device cpu): the {} backend does not implement the "
         "MoE ops (moe_route, gather_rows, scatter_add_rows)",
         m.path, ops.name());

  if (h.fused_qkv_gate_up && !ops.host_memory())
    fail("{}: {} models (fused attn_qkv and gate+up ffn_up) run on the CPU only (--device cpu): the {} backend "
         "does not implement copy_cols",
         m.path, h.arch, ops.name());
  if (h.n_swa > 0 && !ops.host_memory())
    fail("{}: sliding-window attention (window {}) runs on the CPU only (--device cpu): the {} backend's attention "
         "does not implement the window",
         m.path, h.n_swa, ops.name());

  // The per-thread workspace; a forward() re-entered from a hook gets its own buffers.
  static thread_local Workspace tls_ws;
  static thread_local int depth = 0;
  struct Depth {
    int& d;
    explicit Depth(int& x) : d(x) { ++d; }
    ~Depth() { --d; }
  } depth_guard(depth);
  Workspace nested;
  Workspace& ws = depth == 1 ? tls_ws : nested;
  // Token rows of all sequences, concatenated; each with its position.
  std::vector<int32_t>& ids = ws.ids;
  std::vector<int32_t>& pos = ws.pos;
  std::vector<int64_t>& first = ws.first;  // first row of each sequence
  ids.clear();
  pos.clear();
  first.clear();
  for (auto& s : batch.seqs) {
    if (!s.cache) fail("forward: sequence without a KV cache");
    if (s.tokens.empty()) fail("forward: empty sequence in batch");
    if (&s.cache->ops() != &ops)
      fail("forward: a KV cache in {} memory given to the {} backend", s.cache->ops().name(), ops.name());
    if (s.cache->n_past() + int64_t(s.tokens.size()) > s.cache->n_ctx())
      fail("forward: context full ({} + {} tokens > n_ctx {})", s.cache->n_past(), s.tokens.size(),
           s.cache->n_ctx());
    first.push_back(int64_t(ids.size()));
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      ids.push_back(s.tokens[i]);
      pos.push_back(int32_t(s.cache->n_past() + int64_t(i)));
    }
  }
  const int64_t T = int64_t(ids.size());
  const int32_t* ids_p = to_backend(ops, ids, ws.ids_b);
  const int32_t* pos_p = to_backend(ops, pos, ws.pos_b);

  float* x = ws.x.reserve(ops, T * E);
  float* cur = ws.cur.reserve(ops, T * E);
  float* q = ws.q.reserve(ops, T * Wq);
  float* k = ws.k.reserve(ops, T * Wkv);
  float* v = ws.v.reserve(ops, T * Wkv);
  float* kq = ws.kq.reserve(ops, T * Wq);
  float* tmp = ws.tmp.reserve(ops, T * E);
  float* gate = ws.gate.reserve(ops, T * F);
  float* up = ws.up.reserve(ops, T * F);
  // phi3: the fused matmul outputs, (T, Wq + 2 Wkv) and (T, 2 F), before the split.
  const int64_t Wqkv = Wq + 2 * Wkv;
  float* fused = h.fused_qkv_gate_up ? ws.fused.reserve(ops, T * std::max(Wqkv, 2 * F)) : nullptr;
  if (opt.start_layer > 0) {
    if (!opt.start_input) fail("forward: start_layer {} needs start_input", opt.start_layer);
    ops.copy(x, opt.start_input, sizeof(float) * T * E);
  } else {
    ops.get_rows(w.token_embd.view(), ids_p, T, x);
    emit(opt, "inp_embd", -1, ws.x, T, E);
  }
  const RopeParams rope = rope_params(m);
  const float scale = 1.0f / std::sqrt(float(hd));
  const int64_t end_layer = opt.end_layer < 0 ? h.n_layer : std::min<int64_t>(opt.end_layer, h.n_layer);

  for (int64_t il = opt.start_layer; il < end_layer; ++il) {
    const LayerWeights& L = w.layers[il];
    const int li = int(il);
    emit(opt, "attn_inp", li, ws.x, T, E);
    ops.rms_norm(x, T, E, backend_f32(L.attn_norm), h.rms_eps, cur, nullptr);
    emit(opt, "attn_norm", li, ws.cur, T, E);
    // (T, E) x (Wq, E)^T -> (T, Wq); likewise k, v -> (T, Wkv)
    if (L.attn_qkv.present()) {
      // (T, E) x (Wq + 2 Wkv, E)^T, then its column blocks q | k | v
      ops.matmul(cur, T, wv(m, L.attn_qkv), nullptr, fused);
      ops.copy_cols(q, Wq, fused, Wqkv, T, Wq);
      ops.copy_cols(k, Wkv, fused + Wq, Wqkv, T, Wkv);
      ops.copy_cols(v, Wkv, fused + Wq + Wkv, Wqkv, T, Wkv);
    } else {
      ops.matmul(cur, T, wv(m, L.attn_q), opt_f32(L.attn_q_bias), q);
      ops.matmul(cur, T, wv(m, L.attn_k), opt_f32(L.attn_k_bias), k);
      ops.matmul(cur, T, wv(m, L.attn_v), opt_f32(L.attn_v_bias), v);
    }
    if (L.attn_q_norm.present()) ops.rms_norm(q, T * Hq, hd, backend_f32(L.attn_q_norm), h.rms_eps, q, nullptr);
    if (L.attn_k_norm.present()) ops.rms_norm(k, T * Hkv, hd, backend_f32(L.attn_k_norm), h.rms_eps, k, nullptr);
    ops.rope(q, T, Hq, hd, pos_p, rope);
    ops.rope(k, T, Hkv, hd, pos_p, rope);
    emit(opt, "q", li, ws.q, T, Wq);
    emit(opt, "k", li, ws.k, T, Wkv);
    emit(opt, "v", li, ws.v, T, Wkv);
    for (size_t si = 0; si < batch.seqs.size(); ++si) {
      BatchSeq& s = batch.seqs[si];
      const int64_t n = int64_t(s.tokens.size()), r0 = first[si], past = s.cache->n_past();
      ops.copy(s.cache->k(il) + past * Wkv, k + r0 * Wkv, sizeof(float) * n * Wkv);
      ops.copy(s.cache->v(il) + past * Wkv, v + r0 * Wkv, sizeof(float) * n * Wkv);
      if (s.cache->f16) {
        ops.round_f16(s.cache->k(il) + past * Wkv, n * Wkv);
        ops.round_f16(s.cache->v(il) + past * Wkv, n * Wkv);
        ops.round_f16(q + r0 * Wq, n * Wq);
      }
      AttentionArgs a;
      a.n_tokens = n;
      a.n_kv = past + n;
      a.n_head = Hq;
      a.n_head_kv = Hkv;
      a.head_dim = hd;
      a.q = q + r0 * Wq;
      a.k = s.cache->k(il);
      a.v = s.cache->v(il);
      a.pos = pos_p + r0;
      a.window = h.n_swa;
      a.scale = scale;
      a.out = kq + r0 * Wq;
      ops.attention(a);
    }
    emit(opt, "kq_out", li, ws.kq, T, Wq);
    // (T, Wq) x (E, Wq)^T -> (T, E)
    ops.matmul(kq, T, wv(m, L.attn_output), opt_f32(L.attn_output_bias), tmp);
    emit(opt, "attn_out", li, ws.tmp, T, E);
    ops.add(tmp, x, T * E, x);
    emit(opt, "ffn_inp", li, ws.x, T, E);
    ops.rms_norm(x, T, E, backend_f32(L.ffn_norm), h.rms_eps, cur, nullptr);
    emit(opt, "ffn_norm", li, ws.cur, T, E);
    if (L.ffn_gate_inp.present()) {
      moe_ffn_forward(m, ops, L, li, cur, T, tmp, ws.moe, opt.hooks);
    } else {
      // (T, E) x (F, E)^T -> (T, F)
      if (!L.ffn_gate.present()) {
        // phi3: (T, E) x (2F, E)^T, then its column blocks gate | up
        ops.matmul(cur, T, wv(m, L.ffn_up), nullptr, fused);
        ops.copy_cols(gate, F, fused, 2 * F, T, F);
        ops.copy_cols(up, F, fused + F, 2 * F, T, F);
      } else {
        ops.matmul(cur, T, wv(m, L.ffn_gate), nullptr, gate);
        ops.matmul(cur, T, wv(m, L.ffn_up), nullptr, up);
      }
      emit(opt, "gate", li, ws.gate, T, F);
      emit(opt, "up", li, ws.up, T, F);
      ops.swiglu(gate, up, T * F, gate);
      emit(opt, "ffn_act", li, ws.gate, T, F);
      // (T, F) x (E, F)^T -> (T, E)
      ops.matmul(gate, T, wv(m, L.ffn_down), nullptr, tmp);
    }
    emit(opt, "ffn_out", li, ws.tmp, T, E);
    ops.add(tmp, x, T * E, x);
    emit(opt, "l_out", li, ws.x, T, E);
  }
  if (opt.residual_out) ops.copy(opt.residual_out, x, sizeof(float) * T * E);
  if (end_layer < h.n_layer) return;  // a slice of the layers: the caller resumes it
  for (auto& s : batch.seqs) s.cache->n_past_ += int64_t(s.tokens.size());
  if (opt.skip_logits) return;

  // Rows that need logits: a run per sequence (all its rows from logits_from, or its last).
  auto& runs = ws.runs;
  runs.clear();
  int64_t R = 0;
  for (size_t si = 0; si < batch.seqs.size(); ++si) {
    const int64_t n = int64_t(batch.seqs[si].tokens.size());
    const int64_t from = batch.seqs[si].all_logits ? std::clamp<int64_t>(batch.seqs[si].logits_from, 0, n - 1) : n - 1;
    runs.emplace_back(first[si] + from, n - from);
    R += n - from;
  }
  float* sel = ws.sel.reserve(ops, R * E);
  int64_t r = 0;
  for (const auto& [row, count] : runs) {
    ops.copy(sel + r * E, x + row * E, sizeof(float) * count * E);
    r += count;
  }
  ops.rms_norm(sel, R, E, backend_f32(w.output_norm), h.rms_eps, sel, nullptr);
  emit(opt, "result_norm", -1, ws.sel, R, E);
  float* logits = opt.logits_out ? opt.logits_out : ws.logits.reserve(ops, R * V);
  // (R, E) x (V, E)^T -> (R, V)
  ops.matmul(sel, R, wv(m, w.lm_head()), nullptr, logits);
  if (opt.hooks && opt.hooks->on_activation) opt.hooks->on_activation("logits", -1, logits, R, V);
  if (opt.logits_out) return;
  r = 0;
  for (size_t si = 0; si < batch.seqs.size(); ++si) {
    const int64_t n = runs[si].second;
    auto& out = batch.seqs[si].logits;
    out.resize(size_t(n * V));
    ops.download(out.data(), logits + r * V, sizeof(float) * n * V);
    r += n;
  }
}

std::vector<float> forward_logits(const Model& m, const Ops& ops, std::span<const int32_t> tokens) {
  KvCache c(m, int64_t(tokens.size()), ops);
  Batch b;
  b.add(&c, std::vector<int32_t>(tokens.begin(), tokens.end()), true);
  forward(m, ops, b);
  return std::move(b.seqs[0].logits);
}

}  // namespace samq
