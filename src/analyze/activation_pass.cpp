// Helpers shared by the imatrix and Hessian collectors (analyze/activation_pass.h).
#include "analyze/activation_pass.h"

#include <optional>

#include "backend/buffer.h"
#include "core/progress.h"
#include "format/gguf.h"

namespace samq {

const std::map<std::string, std::vector<std::string>>& activation_readers() {
  static const std::map<std::string, std::vector<std::string>> readers = {
      {"attn_norm", {"attn_q", "attn_k", "attn_v", "attn_qkv"}},  // attn_qkv: phi3's fused q/k/v
      {"kq_out", {"attn_output"}},
      {"ffn_norm", {"ffn_gate", "ffn_up", "ffn_gate_inp"}},  // the MoE router reads it too
      {"ffn_act", {"ffn_down"}}};
  return readers;
}

std::vector<std::string> layer_weight_names(int layer, const std::vector<std::string>& kinds) {
  std::vector<std::string> ws;
  for (const auto& kind : kinds) ws.push_back("blk." + std::to_string(layer) + "." + kind + ".weight");
  return ws;
}

void forward_chunks(const Model& m, const Ops& ops, const std::vector<std::vector<int32_t>>& chunks,
                    const ForwardOptions& opt, bool logits, const char* label, bool progress) {
  std::optional<Progress> bar;
  if (progress) bar.emplace(label, int64_t(chunks.size()) * (chunks.empty() ? 0 : int64_t(chunks[0].size())), "tok");
  // Logits (when the hooks need the rows before them) stay in backend memory: nothing reads them.
  Buffer<float> scratch;
  ForwardOptions o = opt;
  for (const auto& c : chunks) {
    KvCache cache(m, int64_t(c.size()), ops);
    Batch b;
    b.add(&cache, c, logits);
    if (logits && !opt.skip_logits) o.logits_out = scratch.reserve(ops, int64_t(c.size()) * m.hparams.n_vocab);
    forward(m, ops, b, o);
    if (bar) bar->add(int64_t(c.size()));
  }
  if (bar) bar->finish();
}

void write_sum_and_count(GgufWriter& w, size_t& index, const std::vector<double>& sum, double count) {
  std::vector<float> s(sum.begin(), sum.end());
  w.write_tensor_data(index++, s.data(), s.size() * sizeof(float));
  const float c = float(count);
  w.write_tensor_data(index++, &c, sizeof(float));
}

}  // namespace samq
