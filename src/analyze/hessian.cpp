// Input-Hessian collection and its GGUF file (analyze/hessian.h).
#include "analyze/hessian.h"

#include "analyze/activation_pass.h"

#include "backend/buffer.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.h"
#include "core/sha256.h"
#include "format/gguf.h"
#include "model/forward.h"

namespace samq {

Hessians collect_hessians(const Model& m, const BackwardOps& bops, const std::vector<std::vector<int32_t>>& chunks,
                          bool progress) {
  const Ops& ops = bops.ops();
  // activation name -> weights that read it (first one names the entry); sums in backend memory
  const auto& readers = activation_readers();
  std::map<std::string, HessianEntry> acc;
  std::map<std::string, Buffer<double>> sums;
  // `present`: the weight (or expert matrix) names this input serves, the entry named after the first.
  auto add_to = [&](const std::vector<std::string>& present, const float* x, int64_t rows, int64_t cols) {
    HessianEntry& e = acc[present[0]];
    Buffer<double>& sum = sums[present[0]];
    if (sum.empty()) {
      e.name = present[0];
      e.serves = present;
      e.n = cols;
      sum = Buffer<double>(ops, cols * cols);
      sum.zero();
    }
    if (e.n != cols) fail("hessian: {} input has {} columns, earlier {}", e.name, cols, e.n);
    bops.xtx_accumulate(x, rows, cols, sum.data());
    e.count += double(rows);
  };
  auto add = [&](const std::vector<std::string>& weights, const float* x, int64_t rows, int64_t cols) {
    std::vector<std::string> present;
    for (const auto& w : weights)
      if (m.find(w)) present.push_back(w);
    if (!present.empty()) add_to(present, x, rows, cols);
  };
  ForwardHooks hooks;
  hooks.on_activation = [&](std::string_view name, int layer, const float* x, int64_t rows, int64_t cols) {
    if (layer < 0) {
      if (name == "result_norm") add({"output.weight"}, x, rows, cols);
      return;
    }
    auto it = readers.find(std::string(name));
    if (it == readers.end()) return;
    add(layer_weight_names(layer, it->second), x, rows, cols);
  };
  // MoE: one entry per expert matrix, from the rows routed to it ("<weight>.<expert>"; gate and up
  // share theirs). An expert no token reached has none.
  hooks.on_expert = [&](std::string_view name, int layer, int e, const float* x, int64_t rows, int64_t cols) {
    std::vector<std::string> kinds;
    if (name == "ffn_moe_inp") kinds = {"ffn_gate_exps", "ffn_up_exps"};
    else if (name == "ffn_moe_act") kinds = {"ffn_down_exps"};
    else return;
    std::vector<std::string> names;
    for (const auto& w : layer_weight_names(layer, kinds))
      if (m.find(w)) names.push_back(hessian_expert_name(w, e));
    if (!names.empty()) add_to(names, x, rows, cols);
  };
  ForwardOptions opt;
  opt.hooks = &hooks;
  // The output matrix's input ("result_norm") is only computed with the logits, for every position
  // when all_logits is set.
  const bool want_output = m.find("output.weight") != nullptr;
  opt.skip_logits = !want_output;
  forward_chunks(m, ops, chunks, opt, want_output, "hessian", progress);
  Hessians h;
  for (auto& [k, e] : acc) {
    e.sum = sums[k].to_host();
    // upper triangle accumulated; mirror it, in tiles (a column walk of a 14336^2 matrix thrashes)
    constexpr int64_t kTile = 64;
    for (int64_t i0 = 0; i0 < e.n; i0 += kTile)
      for (int64_t j0 = 0; j0 <= i0; j0 += kTile)
        for (int64_t i = i0; i < std::min(e.n, i0 + kTile); ++i)
          for (int64_t j = j0; j < std::min(i, j0 + kTile); ++j) e.sum[size_t(i * e.n + j)] = e.sum[size_t(j * e.n + i)];
    h.entries.push_back(std::move(e));
  }
  h.chunk_count = uint32_t(chunks.size());
  h.chunk_size = chunks.empty() ? 0 : uint32_t(chunks[0].size());
  h.device = ops.device();
  return h;
}

std::string hessian_expert_name(const std::string& weight, int64_t expert) {
  return weight + "." + std::to_string(expert);
}

void write_hessian_gguf(const std::string& path, const Hessians& h) {
  GgufWriter w(path);
  w.set_str("general.type", "samq.hessian");
  w.set_u32("samq.hessian.chunk_count", h.chunk_count);
  w.set_u32("samq.hessian.chunk_size", h.chunk_size);
  w.set_str("samq.hessian.calib_sha256", h.calib_sha256.empty() ? "unknown" : h.calib_sha256);
  w.set_str("samq.hessian.device", h.device.empty() ? "unknown" : h.device);
  std::vector<const HessianEntry*> sorted;
  for (const auto& e : h.entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->name < b->name; });
  std::vector<std::string> aliases;
  for (const auto* e : sorted)
    for (size_t i = 1; i < e->serves.size(); ++i) aliases.push_back(e->serves[i] + "=" + e->name);
  w.set_arr_str("samq.hessian.aliases", aliases);
  for (const auto* e : sorted) {
    if (e->name.size() + 8 > kGgufMaxNameLen) fail("hessian: tensor name '{}' too long for GGUF", e->name);
    w.add_tensor_info(e->name + ".hessian", GgmlType::F32, {e->n, e->n});
    w.add_tensor_info(e->name + ".counts", GgmlType::F32, {1});
  }
  w.write_header();
  size_t i = 0;
  for (const auto* e : sorted) write_sum_and_count(w, i, e->sum, e->count);
  w.finish();
}

}  // namespace samq
