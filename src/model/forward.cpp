// The transformer forward pass (llama / mistral / qwen2 / qwen3), written once over the op
// table. See forward.h for the batching model, the hooks and resuming from a layer.
#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <immintrin.h>

#include "core/error.h"
#include "core/fp16.h"

namespace samq {

KvCache::KvCache(const Model& m, int64_t n_ctx) : f16(m.ggml_numerics), n_ctx_(n_ctx) {
  const auto& h = m.hparams;
  k_.assign(h.n_layer, std::vector<float>(size_t(n_ctx * h.n_embd_kv())));
  v_.assign(h.n_layer, std::vector<float>(size_t(n_ctx * h.n_embd_kv())));
}

void KvCache::truncate(int64_t n) {
  if (n < 0 || n > n_past_) fail("KV cache: cannot truncate to {} tokens (holds {})", n, n_past_);
  n_past_ = n;
}

namespace {

void emit(const ForwardOptions& o, std::string_view name, int layer, const std::vector<float>& v,
          int64_t rows, int64_t cols) {
  if (o.hooks && o.hooks->on_activation) o.hooks->on_activation(name, layer, v.data(), rows, cols);
}

WeightView wv(const Model& m, const Tensor& t) {
  WeightView v = t.view();
  v.ggml_act_rounding = m.ggml_numerics;
  return v;
}

const float* opt_f32(const Tensor& t) { return t.present() ? t.f32() : nullptr; }

void round_f16_scalar(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = fp16_to_f32(f32_to_fp16(x[i]));
}
// Hardware conversion rounds to nearest even exactly as f32_to_fp16 does (NaNs stay NaNs).
__attribute__((target("avx512f"))) void round_f16_avx512(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(x + i, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
  round_f16_scalar(x + i, n - i);
}
void round_f16(float* x, int64_t n) {
  static const bool avx512 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
  }();
  if (avx512)
    round_f16_avx512(x, n);
  else
    round_f16_scalar(x, n);
}

// Activation buffers of forward(), per thread, grown and never shrunk: a decode step
// allocates nothing, and prefill buffers are not faulted in afresh on every call.
struct Workspace {
  std::vector<float> x, cur, q, k, v, kq, tmp, gate, up, sel, logits;
  std::vector<int32_t> ids, pos;
  std::vector<int64_t> first, rows;
};

// A view of the first n elements of a workspace buffer, grown as needed. Hooks see
// (data, rows, cols) only, so a longer buffer is fine.
std::vector<float>& buf(std::vector<float>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(size_t(n));
  return v;
}

}  // namespace

void forward(const Model& m, const Ops& ops, Batch& batch, const ForwardOptions& opt) {
  const ModelHparams& h = m.hparams;
  const ModelWeights& w = m.weights;
  const int64_t E = h.n_embd, hd = h.head_dim, Hq = h.n_head, Hkv = h.n_head_kv;
  const int64_t Wq = h.n_embd_q(), Wkv = h.n_embd_kv(), F = h.n_ff, V = h.n_vocab;

  // Token rows of all sequences, concatenated; each with its position.
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
  std::vector<int32_t>& ids = ws.ids;
  std::vector<int32_t>& pos = ws.pos;
  std::vector<int64_t>& first = ws.first;  // first row of each sequence
  ids.clear();
  pos.clear();
  first.clear();
  for (auto& s : batch.seqs) {
    if (!s.cache) fail("forward: sequence without a KV cache");
    if (s.tokens.empty()) fail("forward: empty sequence in batch");
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

  std::vector<float>&x = buf(ws.x, T * E), &cur = buf(ws.cur, T * E), &q = buf(ws.q, T * Wq),
                     &k = buf(ws.k, T * Wkv), &v = buf(ws.v, T * Wkv), &kq = buf(ws.kq, T * Wq),
                     &tmp = buf(ws.tmp, T * E), &gate = buf(ws.gate, T * F), &up = buf(ws.up, T * F);
  if (opt.start_layer > 0) {
    if (!opt.start_input) fail("forward: start_layer {} needs start_input", opt.start_layer);
    std::memcpy(x.data(), opt.start_input, sizeof(float) * T * E);
  } else {
    ops.get_rows(w.token_embd.view(), ids.data(), T, x.data());
    emit(opt, "inp_embd", -1, x, T, E);
  }
  const RopeParams rope = rope_params(m);
  const float scale = 1.0f / std::sqrt(float(hd));

  for (int64_t il = opt.start_layer; il < h.n_layer; ++il) {
    const LayerWeights& L = w.layers[il];
    const int li = int(il);
    emit(opt, "attn_inp", li, x, T, E);
    ops.rms_norm(x.data(), T, E, L.attn_norm.f32(), h.rms_eps, cur.data(), nullptr);
    emit(opt, "attn_norm", li, cur, T, E);
    // (T, E) x (Wq, E)^T -> (T, Wq); likewise k, v -> (T, Wkv)
    ops.matmul(cur.data(), T, wv(m, L.attn_q), opt_f32(L.attn_q_bias), q.data());
    ops.matmul(cur.data(), T, wv(m, L.attn_k), opt_f32(L.attn_k_bias), k.data());
    ops.matmul(cur.data(), T, wv(m, L.attn_v), opt_f32(L.attn_v_bias), v.data());
    if (L.attn_q_norm.present()) ops.rms_norm(q.data(), T * Hq, hd, L.attn_q_norm.f32(), h.rms_eps, q.data(), nullptr);
    if (L.attn_k_norm.present()) ops.rms_norm(k.data(), T * Hkv, hd, L.attn_k_norm.f32(), h.rms_eps, k.data(), nullptr);
    ops.rope(q.data(), T, Hq, hd, pos.data(), rope);
    ops.rope(k.data(), T, Hkv, hd, pos.data(), rope);
    emit(opt, "q", li, q, T, Wq);
    emit(opt, "k", li, k, T, Wkv);
    emit(opt, "v", li, v, T, Wkv);
    for (size_t si = 0; si < batch.seqs.size(); ++si) {
      BatchSeq& s = batch.seqs[si];
      const int64_t n = int64_t(s.tokens.size()), r0 = first[si], past = s.cache->n_past();
      std::memcpy(s.cache->k(il) + past * Wkv, k.data() + r0 * Wkv, sizeof(float) * n * Wkv);
      std::memcpy(s.cache->v(il) + past * Wkv, v.data() + r0 * Wkv, sizeof(float) * n * Wkv);
      if (s.cache->f16) {
        round_f16(s.cache->k(il) + past * Wkv, n * Wkv);
        round_f16(s.cache->v(il) + past * Wkv, n * Wkv);
        round_f16(q.data() + r0 * Wq, n * Wq);
      }
      AttentionArgs a;
      a.n_tokens = n;
      a.n_kv = past + n;
      a.n_head = Hq;
      a.n_head_kv = Hkv;
      a.head_dim = hd;
      a.q = q.data() + r0 * Wq;
      a.k = s.cache->k(il);
      a.v = s.cache->v(il);
      a.pos = pos.data() + r0;
      a.scale = scale;
      a.out = kq.data() + r0 * Wq;
      ops.attention(a);
    }
    emit(opt, "kq_out", li, kq, T, Wq);
    // (T, Wq) x (E, Wq)^T -> (T, E)
    ops.matmul(kq.data(), T, wv(m, L.attn_output), opt_f32(L.attn_output_bias), tmp.data());
    emit(opt, "attn_out", li, tmp, T, E);
    ops.add(tmp.data(), x.data(), T * E, x.data());
    emit(opt, "ffn_inp", li, x, T, E);
    ops.rms_norm(x.data(), T, E, L.ffn_norm.f32(), h.rms_eps, cur.data(), nullptr);
    emit(opt, "ffn_norm", li, cur, T, E);
    // (T, E) x (F, E)^T -> (T, F)
    ops.matmul(cur.data(), T, wv(m, L.ffn_gate), nullptr, gate.data());
    ops.matmul(cur.data(), T, wv(m, L.ffn_up), nullptr, up.data());
    emit(opt, "gate", li, gate, T, F);
    emit(opt, "up", li, up, T, F);
    ops.swiglu(gate.data(), up.data(), T * F, gate.data());
    emit(opt, "ffn_act", li, gate, T, F);
    // (T, F) x (E, F)^T -> (T, E)
    ops.matmul(gate.data(), T, wv(m, L.ffn_down), nullptr, tmp.data());
    emit(opt, "ffn_out", li, tmp, T, E);
    ops.add(tmp.data(), x.data(), T * E, x.data());
    emit(opt, "l_out", li, x, T, E);
  }
  for (auto& s : batch.seqs) s.cache->n_past_ += int64_t(s.tokens.size());
  if (opt.skip_logits) return;

  // Rows that need logits: all of a sequence's, or its last.
  std::vector<int64_t>& rows = ws.rows;
  rows.clear();
  for (size_t si = 0; si < batch.seqs.size(); ++si) {
    const int64_t n = int64_t(batch.seqs[si].tokens.size());
    if (batch.seqs[si].all_logits)
      for (int64_t i = std::clamp<int64_t>(batch.seqs[si].logits_from, 0, n - 1); i < n; ++i)
        rows.push_back(first[si] + i);
    else
      rows.push_back(first[si] + n - 1);
  }
  const int64_t R = int64_t(rows.size());
  std::vector<float>& sel = buf(ws.sel, R * E);
  for (int64_t i = 0; i < R; ++i) std::memcpy(&sel[i * E], &x[rows[i] * E], sizeof(float) * E);
  ops.rms_norm(sel.data(), R, E, w.output_norm.f32(), h.rms_eps, sel.data(), nullptr);
  emit(opt, "result_norm", -1, sel, R, E);
  std::vector<float>& logits = buf(ws.logits, R * V);
  // (R, E) x (V, E)^T -> (R, V)
  ops.matmul(sel.data(), R, wv(m, w.lm_head()), nullptr, logits.data());
  emit(opt, "logits", -1, logits, R, V);
  int64_t r = 0;
  for (auto& s : batch.seqs) {
    const int64_t nt = int64_t(s.tokens.size());
    const int64_t n = s.all_logits ? nt - std::clamp<int64_t>(s.logits_from, 0, nt - 1) : 1;
    s.logits.assign(logits.begin() + r * V, logits.begin() + (r + n) * V);
    r += n;
  }
}

std::vector<float> forward_logits(const Model& m, const Ops& ops, std::span<const int32_t> tokens) {
  KvCache c(m, int64_t(tokens.size()));
  Batch b;
  b.add(&c, std::vector<int32_t>(tokens.begin(), tokens.end()), true);
  forward(m, ops, b);
  return std::move(b.seqs[0].logits);
}

}  // namespace samq
