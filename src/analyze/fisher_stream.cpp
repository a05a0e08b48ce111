// The layer-streamed sensitivity pass (SensitivityAccumulator::run_streamed, analyze/fisher.h;
// design: analyze/layer_stream.h). Per chunk it does exactly what add_chunk does, op for op, but
// in layer-major order:
//   1. forward, layer by layer over all chunks, keeping the residual entering each layer;
//   2. the head: logits, labels and dL/dlogits per label kind, backward through the output norm
//      and head; dL/d(residual at the top) is kept per chunk and label kind;
//   3. layers from the top: recompute the layer from its checkpoint, backward per label kind,
//      accumulate that layer's statistics, hand its tensors to on_tensor_done, free them;
//   4. the token embedding from dL/d(residual at the bottom) (a tied head's gradient is
//      recomputed here, so the embedding's chunk gradient is the same sum as add_chunk's).
// Accumulation order per tensor is chunk order, label kind order, as in add_chunk: the results
// are the same bits.
#include <algorithm>
#include <cmath>
#include <optional>

#include "analyze/fisher.h"
#include "analyze/residual_store.h"
#include "core/error.h"
#include "core/progress.h"

namespace samq {

namespace {
std::vector<const Tensor*> layer_tensors(const LayerWeights& L) {
  std::vector<const Tensor*> v;
  for (const Tensor* t : {&L.attn_norm, &L.attn_q, &L.attn_k, &L.attn_v, &L.attn_q_bias, &L.attn_k_bias,
                          &L.attn_v_bias, &L.attn_q_norm, &L.attn_k_norm, &L.attn_output, &L.attn_output_bias,
                          &L.ffn_norm, &L.ffn_gate, &L.ffn_up, &L.ffn_down, &L.ffn_gate_inp, &L.ffn_gate_exps,
                          &L.ffn_up_exps, &L.ffn_down_exps})
    if (t->present()) v.push_back(t);
  return v;
}
}  // namespace

void SensitivityAccumulator::run_streamed(Model& m, const std::vector<std::vector<int32_t>>& chunks,
                                          const StreamOptions& so) {
  if (&m != &m_) fail("run_streamed: not the accumulator's model");
  if (!grads_.entries().empty()) fail("run_streamed: the accumulator was made for add_chunk");
  const ModelHparams& h = m.hparams;
  const int64_t L = h.n_layer, E = h.n_embd, V = h.n_vocab, C = int64_t(chunks.size());
  if (C == 0) return;
  std::vector<int64_t> rows;
  int64_t max_n = 0;
  for (size_t c = 0; c < chunks.size(); ++c) {
    const int64_t n = int64_t(chunks[c].size());
    if (n < 2) fail("calibration chunk {} has {} tokens (need at least 2)", c, n);
    rows.push_back(n);
    max_n = std::max(max_n, n);
  }
  std::unordered_map<std::string, size_t> by_name;
  for (size_t i = 0; i < stats_.size(); ++i) by_name[stats_[i].name] = i;
  std::vector<bool> closed(stats_.size(), false);
  auto done = [&](const Tensor* t) {
    const size_t i = by_name.at(t->name);
    closed[i] = true;
    close_tensor(i);
    if (so.on_tensor_done) so.on_tensor_done(stats_[i]);
    for (int k = 0; k < 2; ++k) std::vector<float>().swap(stats_[i].g2[k]);
  };

  ResidualStore X(L + 1, rows, E, so.scratch_dir);  // residual entering layer l (l = L: the top)
  ResidualStore D(2, rows, E, so.scratch_dir);      // dL/d(residual) per label kind
  Buffer<float> xin(ops_, max_n * E), xout(ops_, max_n * E), dres(ops_, max_n * E), dscratch;
  std::vector<float> host(size_t(max_n * E));
  auto load = [&](ResidualStore& s, int64_t slot, int64_t c, Buffer<float>& b) {
    s.get(slot, c, host.data());
    b.upload(host.data(), rows[size_t(c)] * E);
  };
  auto save = [&](ResidualStore& s, int64_t slot, int64_t c, const Buffer<float>& b) {
    b.download(host.data(), rows[size_t(c)] * E);
    s.put(slot, c, host.data());
  };
  std::optional<Progress> bar;
  if (so.progress) bar.emplace("analyze (streamed)", C * (2 * L + 3), "chunk-steps");
  auto step = [&] {
    if (bar) bar->add(1);
  };

  // 1. forward: the embedding (end_layer 0), then each layer over all chunks
  auto run_slice = [&](int64_t c, int start, int end, const float* in) {
    KvCache cache(m, rows[size_t(c)], ops_);
    Batch b;
    b.add(&cache, chunks[size_t(c)], false);
    ForwardOptions fo;
    fo.start_layer = start;
    fo.end_layer = end;
    fo.start_input = in;
    fo.residual_out = xout.data();
    forward(m, ops_, b, fo);
  };
  for (int64_t c = 0; c < C; ++c) {
    run_slice(c, 0, 0, nullptr);
    save(X, 0, c, xout);
    step();
  }
  for (int l = 0; l < int(L); ++l) {
    m.prepare_layer(l);
    m.prefetch_layer(l + 1);
    for (int64_t c = 0; c < C; ++c) {
      load(X, l, c, xin);
      run_slice(c, l, l + 1, xin.data());
      save(X, l + 1, c, xout);
      step();
    }
    if (l + 1 < int(L)) m.release_layer(l);  // the top layer is the first one backward needs
  }

  // 2. the head
  const Tensor& head = m.weights.lm_head();
  const bool tied = &head == &m.weights.token_embd;
  std::vector<const Tensor*> head_tensors = {&head};
  if (m.weights.output_norm.present()) head_tensors.push_back(&m.weights.output_norm);
  float* dl = dl_.reserve(ops_, max_n * V);
  {
    GradientBuffers g(head_tensors, ops_);
    for (const Tensor* t : head_tensors) open_tensor(by_name.at(t->name));
    for (int64_t c = 0; c < C; ++c) {
      const auto& tok = chunks[size_t(c)];
      const int64_t n = rows[size_t(c)];
      load(X, L, c, xin);
      const float* logits = mg_->forward_head(tok, xin.data());
      for (int k = 0; k < 2; ++k) {
        const double loss = dlogits(k, tok, c, logits, dl);
        if (k == kEmpirical) loss_sum_ += loss;
        g.zero();
        const BackwardHooks hooks = hooks_for(k, by_name);
        mg_->backward_head(dl, dres.data(), &g, &hooks);
        save(D, k, c, dres);
        // a tied head's full gradient also holds the embedding's rows: reduced in step 4
        reduce_gradients(k, g, by_name, tied ? head.name : std::string());
      }
      const int64_t from = std::clamp<int64_t>(opt_.loss_from, 0, n - 2);
      n_chunks_ += 1;
      n_tokens_ += n;
      n_loss_ += n - 1 - from;
      step();
    }
    for (const Tensor* t : head_tensors)
      if (t != &head || !tied) done(t);
  }
  if (!tied) X.drop(L);

  // 3. the layers, from the top
  for (int l = int(L) - 1; l >= 0; --l) {
    m.prepare_layer(l);
    m.prefetch_layer(l - 1);
    const std::vector<const Tensor*> ts = layer_tensors(m.weights.layers[size_t(l)]);
    GradientBuffers g(ts, ops_);
    for (const Tensor* t : ts) open_tensor(by_name.at(t->name));
    for (int64_t c = 0; c < C; ++c) {
      load(X, l, c, xin);
      mg_->forward_layer(l, chunks[size_t(c)], xin.data());
      for (int k = 0; k < 2; ++k) {
        load(D, k, c, dres);
        g.zero();
        const BackwardHooks hooks = hooks_for(k, by_name);
        mg_->backward_layer(l, dres.data(), &g, &hooks);
        save(D, k, c, dres);
        reduce_gradients(k, g, by_name);
      }
      step();
    }
    for (const Tensor* t : ts) done(t);
    m.release_layer(l);
    if (l > 0) X.drop(l);  // X[0] is the embedding output: not needed below either
  }
  X.drop(0);

  // 4. the token embedding
  {
    const Tensor& te = m.weights.token_embd;
    GradientBuffers g(std::vector<const Tensor*>{&te}, ops_);
    if (!tied) open_tensor(by_name.at(te.name));
    for (int64_t c = 0; c < C; ++c) {
      const auto& tok = chunks[size_t(c)];
      const float* logits = nullptr;
      if (tied) {
        load(X, L, c, xin);
        logits = mg_->forward_head(tok, xin.data());
      } else {
        mg_->set_tokens(tok);
      }
      for (int k = 0; k < 2; ++k) {
        g.zero();
        if (tied) {  // the head's part of the chunk gradient, as add_chunk accumulates it first
          dlogits(k, tok, c, logits, dl);
          dscratch.reserve(ops_, max_n * E);
          mg_->backward_head(dl, dscratch.data(), &g, nullptr);
        }
        load(D, k, c, dres);
        const BackwardHooks hooks = hooks_for(k, by_name);
        mg_->backward_embedding(dres.data(), &g, &hooks);
        reduce_gradients(k, g, by_name);
      }
      step();
    }
    done(&te);
  }
  // Tensors no pass reads a gradient of (rope_freqs): zero statistics, as in add_chunk.
  for (size_t i = 0; i < stats_.size(); ++i)
    if (!closed[i]) {
      open_tensor(i);
      const Tensor* t = m.find(stats_[i].name);
      if (t) done(t);
    }
  if (bar) bar->finish();
  dirty_ = false;
}

}  // namespace samq
