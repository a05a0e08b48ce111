// Importance matrix collection and its GGUF format (analyze/imatrix.h).
#include "analyze/imatrix.h"

#include "analyze/activation_pass.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.h"
#include "backend/buffer.h"
#include "format/gguf.h"
#include "model/forward.h"
#include "model/tensor_names.h"

namespace samq {

const ImatrixEntry* Imatrix::find(const std::string& name) const {
  for (const auto& e : entries)
    if (e.name == name) return &e;
  return nullptr;
}

std::vector<float> Imatrix::mean(const std::string& name) const {
  const ImatrixEntry* e = find(name);
  if (!e || e->count <= 0) return {};
  if (!e->counts.empty()) {
    const size_t n = e->counts.size(), cols = e->sum2.size() / n;
    std::vector<float> v(e->sum2.size(), 1.0f);
    for (size_t j = 0; j < n; ++j)
      if (e->counts[j] > 0)
        for (size_t i = 0; i < cols; ++i) v[j * cols + i] = float(e->sum2[j * cols + i] / e->counts[j]);
    return v;
  }
  std::vector<float> v(e->sum2.size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(e->sum2[i] / e->count);
  return v;
}

bool imatrix_collects(const std::string& name) {
  const auto p = parse_gguf_name(name);
  if (p.layer < 0 || p.suffix != "weight") return false;
  static const char* kinds[] = {"attn_q",        "attn_k",   "attn_v",        "attn_qkv",  "attn_output",
                                "ffn_gate",      "ffn_up",   "ffn_down",      "ffn_gate_inp",
                                "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
  return std::find(std::begin(kinds), std::end(kinds), p.kind) != std::end(kinds);
}

Imatrix collect_imatrix(const Model& m, const BackwardOps& bops, const std::vector<std::vector<int32_t>>& chunks,
                        bool progress) {
  const Ops& ops = bops.ops();
  // activation name -> weights that read it; one backend accumulator per activation
  const auto& readers = activation_readers();
  struct Acc {
    std::vector<std::string> weights;
    Buffer<double> sum2;
    double count = 0;
  };
  std::map<std::pair<std::string, int>, Acc> acc;
  ForwardHooks hooks;
  hooks.on_activation = [&](std::string_view name, int layer, const float* x, int64_t rows, int64_t cols) {
    auto it = readers.find(std::string(name));
    if (it == readers.end() || layer < 0) return;
    Acc& a = acc[{std::string(name), layer}];
    if (a.sum2.empty()) {
      for (const auto& w : layer_weight_names(layer, it->second))
        if (m.find(w)) a.weights.push_back(w);
      a.sum2 = Buffer<double>(ops, cols);
      a.sum2.zero();
    }
    bops.col_sq_accumulate(x, rows, cols, a.sum2.data());
    a.count += double(rows);
  };
  // MoE experts: per (activation, layer), n_expert stacked sums and a count per expert.
  struct ExpertAcc {
    std::vector<std::string> weights;
    Buffer<double> sum2;
    std::vector<double> counts;
    int64_t cols = 0;
  };
  std::map<std::pair<std::string, int>, ExpertAcc> eacc;
  static const std::map<std::string, std::vector<std::string>> expert_readers = {
      {"ffn_moe_inp", {"ffn_gate_exps", "ffn_up_exps"}}, {"ffn_moe_act", {"ffn_down_exps"}}};
  hooks.on_expert = [&](std::string_view name, int layer, int e, const float* x, int64_t rows, int64_t cols) {
    auto it = expert_readers.find(std::string(name));
    if (it == expert_readers.end()) return;
    ExpertAcc& a = eacc[{std::string(name), layer}];
    const int64_t n = m.hparams.n_expert;
    if (a.sum2.empty()) {
      for (const auto& w : layer_weight_names(layer, it->second))
        if (m.find(w)) a.weights.push_back(w);
      a.sum2 = Buffer<double>(ops, n * cols);
      a.sum2.zero();
      a.counts.assign(size_t(n), 0.0);
      a.cols = cols;
    }
    bops.col_sq_accumulate(x, rows, cols, a.sum2.data() + e * cols);
    a.counts[size_t(e)] += double(rows);
  };
  ForwardOptions opt;
  opt.hooks = &hooks;
  opt.skip_logits = true;
  forward_chunks(m, ops, chunks, opt, false, "imatrix", progress);
  Imatrix im;
  for (auto& [k, a] : acc) {
    const std::vector<double> sum2 = a.sum2.to_host();
    for (const auto& w : a.weights) im.entries.push_back({w, sum2, a.count, {}});
  }
  for (auto& [k, a] : eacc) {
    const std::vector<double> sum2 = a.sum2.to_host();
    double total = 0;
    for (double c : a.counts) total += c;
    for (const auto& w : a.weights) im.entries.push_back({w, sum2, total, a.counts});
  }
  std::sort(im.entries.begin(), im.entries.end(), [](auto& a, auto& b) { return a.name < b.name; });
  im.chunk_count = uint32_t(chunks.size());
  im.chunk_size = chunks.empty() ? 0 : uint32_t(chunks[0].size());
  return im;
}

void write_imatrix_gguf(const std::string& path, const Imatrix& im) {
  GgufWriter w(path);
  w.set_str("general.type", "imatrix");
  w.set_arr_str("imatrix.datasets", im.datasets);
  w.set_u32("imatrix.chunk_count", im.chunk_count);
  w.set_u32("imatrix.chunk_size", im.chunk_size);
  std::vector<ImatrixEntry> sorted = im.entries;
  std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.name < b.name; });
  for (const auto& e : sorted) {
    if (e.name.size() + 8 > kGgufMaxNameLen) fail("imatrix: tensor name '{}' too long for GGUF", e.name);
    const int64_t n_mat = e.counts.empty() ? 1 : int64_t(e.counts.size());
    w.add_tensor_info(e.name + ".in_sum2", GgmlType::F32, {int64_t(e.sum2.size()) / n_mat, n_mat});
    w.add_tensor_info(e.name + ".counts", GgmlType::F32, {1, n_mat});
  }
  w.write_header();
  size_t i = 0;
  for (const auto& e : sorted) {
    if (e.counts.empty()) {
      write_sum_and_count(w, i, e.sum2, e.count);
      continue;
    }
    std::vector<float> s(e.sum2.begin(), e.sum2.end()), c(e.counts.begin(), e.counts.end());
    w.write_tensor_data(i++, s.data(), s.size() * sizeof(float));
    w.write_tensor_data(i++, c.data(), c.size() * sizeof(float));
  }
  w.finish();
}

Imatrix read_imatrix_gguf(const std::string& path) {
  GgufFile f = GgufFile::open(path);
  if (f.get_str("general.type", "") != "imatrix")
    fail("{}: general.type is not \"imatrix\"", path);
  Imatrix im;
  im.datasets = f.get_arr_str("imatrix.datasets", {});
  im.chunk_count = f.get_u32("imatrix.chunk_count", 0);
  im.chunk_size = f.get_u32("imatrix.chunk_size", 0);
  std::map<std::string, ImatrixEntry> acc;
  for (const auto& t : f.tensors()) {
    auto ends = [&](std::string_view suf) {
      return t.name.size() > suf.size() && t.name.compare(t.name.size() - suf.size(), suf.size(), suf) == 0;
    };
    if (t.type != GgmlType::F32) fail("{}: tensor {} is not F32", path, t.name);
    const float* d = reinterpret_cast<const float*>(t.data);
    if (ends(".in_sum2")) {
      ImatrixEntry& e = acc[t.name.substr(0, t.name.size() - 8)];
      e.sum2.assign(d, d + t.n_elements());
    } else if (ends(".counts")) {
      ImatrixEntry& e = acc[t.name.substr(0, t.name.size() - 7)];
      e.count = 0;
      for (int64_t j = 0; j < t.n_elements(); ++j) e.count += d[j];
      if (t.n_elements() > 1) e.counts.assign(d, d + t.n_elements());
    } else {
      fail("{}: unexpected tensor {} (expected .in_sum2 / .counts)", path, t.name);
    }
  }
  for (auto& [k, e] : acc) {
    if (e.sum2.empty()) fail("{}: {} has counts but no in_sum2", path, k);
    if (!e.counts.empty() && e.sum2.size() % e.counts.size() != 0)
      fail("{}: {}.in_sum2 has {} values for {} counts", path, k, e.sum2.size(), e.counts.size());
    e.name = k;
    im.entries.push_back(std::move(e));
  }
  return im;
}

double cosine_similarity(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return 0;
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  if (aa == 0 && bb == 0) return 1;
  return ab / std::sqrt(aa * bb);
}

}  // namespace samq
