// Single-tensor KLD measurement (analyze/measure.h).
#include "analyze/measure.h"

#include <cmath>
#include <optional>

#include "backend/buffer.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/perplexity.h"
#include "model/forward.h"
#include "model/tensor_names.h"

namespace samq {

int measure_start_layer(const Model& m, const std::string& name) {
  const auto p = parse_gguf_name(name);
  if (p.layer >= 0) return p.layer;
  if (p.kind == "output" || p.kind == "output_norm") return m.weights.output.present() || p.kind == "output_norm"
                                                               ? int(m.hparams.n_layer)
                                                               : 0;  // tied head: embedding too
  return 0;
}

SingleTensorKld::SingleTensorKld(Model& m, const Ops& ops, std::vector<std::vector<int32_t>> chunks, bool progress)
    : m_(m), ops_(ops), chunks_(std::move(chunks)) {
  if (chunks_.empty()) fail("measure: no evaluation chunks");
  ctx_ = int64_t(chunks_[0].size());
  const int64_t L = m.hparams.n_layer, E = m.hparams.n_embd, V = m.hparams.n_vocab;
  std::optional<Progress> bar;
  if (progress) bar.emplace("base", int64_t(chunks_.size()), "chunks");
  KldAccumulator acc;
  for (const auto& ct : chunks_) {
    std::vector<std::vector<float>> in(size_t(L + 1));
    ForwardHooks hooks;
    auto keep = [&](std::vector<float>& v, const float* d, int64_t count) {
      v.resize(size_t(count));
      ops.download(v.data(), d, sizeof(float) * size_t(count));
    };
    hooks.on_activation = [&](std::string_view name, int layer, const float* d, int64_t rows, int64_t cols) {
      if (name == "attn_inp" && layer >= 0) keep(in[layer], d, rows * cols);
      if (name == "l_out" && layer == L - 1) keep(in[L], d, rows * cols);
    };
    KvCache cache(m, ctx_);
    Batch b;
    BatchSeq& s = b.add(&cache, ct, true);
    s.logits_from = eval_first_scored(ctx_);
    ForwardOptions fo;
    fo.hooks = &hooks;
    forward(m, ops, b, fo);
    for (auto& v : in)
      if (int64_t(v.size()) != ctx_ * E) fail("measure: forward did not report the layer inputs");
    inputs_.push_back(std::move(in));
    base_.push_back(base_chunk_dists(b.seqs[0].logits, ctx_, V));
    const int64_t first = eval_first_scored(ctx_);
    for (int64_t j = 0; j < eval_n_scored(ctx_); ++j)
      acc.add(&b.seqs[0].logits[j * V], V, ct[first + j + 1], nullptr);
    if (bar) bar->add(1);
  }
  if (bar) bar->finish();
  base_nll_ = acc.result().mean_nll;
}

int64_t SingleTensorKld::n_scored() const { return int64_t(chunks_.size()) * eval_n_scored(ctx_); }

SingleTensorKld::Result SingleTensorKld::run_from(int start_layer) {
  const int64_t V = m_.hparams.n_vocab, first = eval_first_scored(ctx_);
  KldAccumulator acc;
  for (size_t c = 0; c < chunks_.size(); ++c) {
    KvCache cache(m_, ctx_);
    Batch b;
    BatchSeq& s = b.add(&cache, chunks_[c], true);
    s.logits_from = first;
    ForwardOptions fo;
    fo.start_layer = start_layer;
    Buffer<float> start;
    if (start_layer > 0) {
      const std::vector<float>& in = inputs_[c][start_layer];
      if (ops_.host_memory()) {
        fo.start_input = in.data();
      } else {
        start = Buffer<float>::from_host(ops_, in);
        fo.start_input = start.data();
      }
    }
    forward(m_, ops_, b, fo);
    for (int64_t j = 0; j < eval_n_scored(ctx_); ++j)
      acc.add(&b.seqs[0].logits[j * V], V, chunks_[c][first + j + 1], &base_[c][j]);
  }
  const EvalResult r = acc.result();
  Result out;
  out.kld_mean = r.kld_mean;
  out.same_top_pct = r.same_top_pct;
  out.dnll = r.mean_nll - base_nll_;
  return out;
}

SingleTensorKld::Result SingleTensorKld::measure(const std::string& name, GgmlType type, const float* imatrix) {
  Tensor prev = m_.replace_with_round_trip(name, type, imatrix);
  Result r;
  try {
    r = run_from(measure_start_layer(m_, name));
  } catch (...) {
    m_.restore(std::move(prev));
    throw;
  }
  m_.restore(std::move(prev));
  return r;
}

}  // namespace samq
