// Layer-streamed input Hessians (analyze/hessian_stream.h).
#include "analyze/hessian_stream.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "analyze/activation_pass.h"
#include "analyze/hessian.h"
#include "backend/buffer.h"
#include "core/error.h"
#include "model/forward.h"

namespace samq {

StreamedHessians::StreamedHessians(Model& m, const BackwardOps& bops, std::vector<std::vector<int32_t>> chunks,
                                   std::string calib_sha256, bool progress)
    : m_(m), bops_(bops), chunks_(std::move(chunks)), calib_sha256_(std::move(calib_sha256)), progress_(progress) {
  if (chunks_.empty()) fail("streamed Hessians: no calibration chunks");
  const ModelHparams& h = m.hparams;
  const std::map<std::string, int64_t> width = {
      {"attn_norm", h.n_embd}, {"kq_out", h.n_embd_q()}, {"ffn_norm", h.n_embd}, {"ffn_act", h.n_ff}};
  for (int l = 0; l < int(h.n_layer); ++l)
    for (const auto& [act, kinds] : activation_readers())
      for (const auto& w : layer_weight_names(l, kinds))
        if (m.find(w)) weights_[w] = {l, width.at(act)};
  if (m.find("output.weight")) weights_["output.weight"] = {int(h.n_layer), h.n_embd};
  // MoE: one entry per expert matrix (hessian_expert_name), as collect_hessians.
  for (int l = 0; l < int(h.n_layer); ++l)
    for (const auto& [kind, width_in] : {std::pair<const char*, int64_t>{"ffn_gate_exps", h.n_embd},
                                         {"ffn_up_exps", h.n_embd}, {"ffn_down_exps", h.n_ff_exp}})
      for (const auto& w : layer_weight_names(l, {kind}))
        if (m.find(w))
          for (int64_t e = 0; e < h.n_expert; ++e) weights_[hessian_expert_name(w, e)] = {l, width_in};
}

bool StreamedHessians::has(const std::string& w) const { return weights_.count(w) != 0; }

int64_t StreamedHessians::cols(const std::string& w) const {
  auto it = weights_.find(w);
  return it == weights_.end() ? 0 : it->second.second;
}

int StreamedHessians::pass_order(const std::string& w) const {
  auto it = weights_.find(w);
  return it == weights_.end() ? -1 : it->second.first;
}

std::vector<float> StreamedHessians::mean(const std::string& w) {
  auto it = weights_.find(w);
  if (it == weights_.end()) return {};
  const int layer = it->second.first;
  if (held_ != layer) compute_layer(layer);
  auto m = means_.find(w);
  if (m != means_.end()) return m->second;
  if (w.find("_exps.weight.") != std::string::npos) return {};  // an expert no token was routed to
  fail("streamed Hessians: no entry for {}", w);
}

void StreamedHessians::restart() {
  x_.clear();
  next_ = 0;
}

void StreamedHessians::compute_layer(int layer) {
  const auto t0 = std::chrono::steady_clock::now();
  const Ops& ops = bops_.ops();
  const ModelHparams& h = m_.hparams;
  const int64_t E = h.n_embd;
  means_.clear();
  held_ = -1;
  if (layer < next_) restart();  // asked for a layer already passed: from the embedding again
  int64_t max_n = 0;
  for (const auto& c : chunks_) max_n = std::max<int64_t>(max_n, int64_t(c.size()));
  Buffer<float> xin(ops, max_n * E), xout(ops, max_n * E), logits;
  if (x_.empty()) {  // the embedding
    x_.resize(chunks_.size());
    for (size_t c = 0; c < chunks_.size(); ++c) {
      KvCache cache(m_, int64_t(chunks_[c].size()), ops);
      Batch b;
      b.add(&cache, chunks_[c], false);
      ForwardOptions fo;
      fo.end_layer = 0;
      fo.residual_out = xout.data();
      forward(m_, ops, b, fo);
      x_[c] = xout.to_host(int64_t(chunks_[c].size()) * E);
    }
    next_ = 0;
  }
  // Sums of the target layer's inputs (as collect_hessians: one per distinct input, backend memory)
  std::map<std::string, Buffer<double>> sums;
  std::map<std::string, double> counts;
  std::map<std::string, std::vector<std::string>> serves;
  ForwardHooks hooks;
  // One sum per distinct input, named by the first weight reading it; the others share it.
  auto accumulate = [&](const std::vector<std::string>& present, const float* x, int64_t rows, int64_t cols) {
    if (present.empty()) return;
    Buffer<double>& s = sums[present[0]];
    if (s.empty()) {
      s = Buffer<double>(ops, cols * cols);
      s.zero();
      serves[present[0]] = present;
    }
    bops_.xtx_accumulate(x, rows, cols, s.data());
    counts[present[0]] += double(rows);
  };
  hooks.on_activation = [&](std::string_view name, int l, const float* x, int64_t rows, int64_t cols) {
    std::vector<std::string> ws;
    if (l < 0) {
      if (name == "result_norm" && layer == int(h.n_layer)) ws = {"output.weight"};
    } else if (l == layer) {
      auto it = activation_readers().find(std::string(name));
      if (it != activation_readers().end()) ws = layer_weight_names(l, it->second);
    }
    std::vector<std::string> present;
    for (const auto& w : ws)
      if (m_.find(w)) present.push_back(w);
    accumulate(present, x, rows, cols);
  };
  hooks.on_expert = [&](std::string_view name, int l, int e, const float* x, int64_t rows, int64_t cols) {
    if (l != layer) return;
    std::vector<std::string> kinds;
    if (name == "ffn_moe_inp") kinds = {"ffn_gate_exps", "ffn_up_exps"};
    else if (name == "ffn_moe_act") kinds = {"ffn_down_exps"};
    else return;
    std::vector<std::string> present;
    for (const auto& w : layer_weight_names(l, kinds))
      if (m_.find(w)) present.push_back(hessian_expert_name(w, e));
    accumulate(present, x, rows, cols);
  };
  // Run layers next_ .. layer (the head when layer == n_layer), keeping the residual.
  while (next_ <= layer) {
    const int l = next_;
    const bool head = l == int(h.n_layer);
    if (!head) {
      m_.prepare_layer(l);
      m_.prefetch_layer(l + 1);
    }
    if (progress_) std::fprintf(stderr, "\rhessian (streamed): %s %d/%lld ", head ? "head" : "layer", l, (long long)h.n_layer);
    for (size_t c = 0; c < chunks_.size(); ++c) {
      const int64_t n = int64_t(chunks_[c].size());
      xin.upload(x_[c].data(), n * E);
      KvCache cache(m_, n, ops);
      Batch b;
      b.add(&cache, chunks_[c], head);
      ForwardOptions fo;
      fo.hooks = l == layer ? &hooks : nullptr;
      fo.start_layer = l;
      fo.start_input = l > 0 ? xin.data() : nullptr;  // layer 0 recomputes the embedding (same rows)
      if (head) {
        fo.logits_out = logits.reserve(ops, n * h.n_vocab);
      } else {
        fo.end_layer = l + 1;
        fo.residual_out = xout.data();
      }
      forward(m_, ops, b, fo);
      if (!head) xout.download(x_[c].data(), n * E);
    }
    if (!head) m_.release_layer(l);
    ++next_;
    ++layers_computed_;
    if (head) break;
  }
  if (progress_) std::fprintf(stderr, "\n");
  for (auto& [name, buf] : sums) {
    const int64_t n = cols(name);
    std::vector<float> mean(size_t(n * n));  // mirrored upper triangle / count, as HessianFile::mean
    bops_.xtx_mean(buf.data(), n, float(counts[name]), mean.data());
    const auto& ws = serves[name];
    for (size_t k = 0; k + 1 < ws.size(); ++k) means_[ws[k]] = mean;
    means_[ws.back()] = std::move(mean);
  }
  held_ = layer;
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace samq
