#include "plan/plan.h"

#include <algorithm>
#include <cmath>
#include <regex>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/sha256.h"
#include "plan/budget.h"
#include "plan/json_text.h"
#include "plan/presets.h"
#include "plan/solver.h"

namespace samq::plan {
namespace {
using nlohmann::json;

int64_t bytes_at(const TensorSensitivity& t, GgmlType type) {
  const auto& info = ggml_type_info(type);
  if (t.cols % info.block_size != 0)
    fail("tensor {}: rows of {} elements cannot be stored as {} (block of {})", t.name, t.cols, info.name,
         info.block_size);
  return t.rows * ggml_row_size(type, t.cols);
}

PlanTensor make_tensor(const TensorSensitivity& t, GgmlType type) {
  PlanTensor r;
  r.name = t.name;
  r.type = type;
  r.bytes = bytes_at(t, type);
  if (const Candidate* c = t.find(type)) r.dloss = c->dloss;
  else if (!t.quantizable) r.dloss = 0.0;
  r.params = t.params;
  r.layer = t.layer;
  r.kind = t.kind;
  return r;
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower((unsigned char)c));
  return s;
}

std::string fmt_bytes(int64_t b) { return fmt::format("{} bytes ({:.2f} MB)", b, double(b) / 1e6); }
}  // namespace

void Plan::recompute_totals() {
  tensor_bytes = 0;
  params = 0;
  dloss = 0;
  dloss_complete = true;
  int64_t padded = 0;
  for (const auto& t : tensors) {
    tensor_bytes += t.bytes;
    padded += pad32(t.bytes);
    params += t.params;
    if (t.dloss) dloss += *t.dloss;
    else dloss_complete = false;
  }
  file_bytes = overhead_bytes + metadata_bytes + padded;
  bpw = params > 0 ? 8.0 * double(tensor_bytes) / double(params) : 0;
  std::vector<GgmlType> ty;
  std::vector<int64_t> by;
  for (const auto& t : tensors) ty.push_back(t.type), by.push_back(t.bytes);
  if (policy.rfind("preset:", 0) != 0) ftype = guess_ftype(ty, by);
}

KeepRule parse_keep(const std::string& text) {
  const size_t eq = text.rfind('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    fail("--keep \"{}\": expected REGEX=TYPE, e.g. \"output\\.weight=q8_0\"", text);
  KeepRule k;
  k.pattern = text.substr(0, eq);
  const auto t = ggml_type_from_name(text.substr(eq + 1));
  if (!t || !ggml_type_info(*t).storage) fail("--keep \"{}\": unknown type \"{}\"", text, text.substr(eq + 1));
  k.type = *t;
  try {
    std::regex re(k.pattern);
  } catch (const std::regex_error& e) {
    fail("--keep \"{}\": bad regular expression: {}", text, e.what());
  }
  return k;
}

static bool has_signal(const Sensitivity& s, const std::string& name) {
  if (!s.raw.is_object() || !s.raw.contains("tensors")) return false;
  const json& ts = s.raw.at("tensors");
  for (size_t i = 0; i < s.tensors.size() && i < ts.size(); ++i) {
    if (!s.tensors[i].quantizable || !ts[i].contains("candidates")) continue;
    for (const auto& c : ts[i].at("candidates"))
      if (!c.contains("signals") || !c.at("signals").contains(name)) return false;
  }
  return true;
}

std::string resolve_signal(const Sensitivity& s, const PlanOptions& o) {
  if (!o.signal.empty()) return o.signal;
  if (o.budget_kind == "max-kld" && has_signal(s, "fisher_emp_full")) return "fisher_emp_full";
  return "dloss";
}

Plan make_plan(const Sensitivity& s_in, const PlanOptions& o) {
  const std::string signal = resolve_signal(s_in, o);
  const Sensitivity s = with_signal(s_in, signal);
  Plan p;
  p.samq_version = o.samq_version;
  p.sensitivity_path = s.path;
  p.sensitivity_sha256 = s.sha256;
  p.model_sha256 = s.model.sha256;
  p.policy = o.policy;
  p.overhead_bytes = s.gguf_overhead_bytes;
  p.budget.kind = o.budget_kind;
  p.budget.value = o.budget_value;
  p.options = {{"policy", o.policy}};
  if (o.policy == "threshold") p.options["top"] = o.threshold_top;
  if (signal != "dloss") p.options["signal"] = signal;
  if (!o.types.empty()) {
    json ts = json::array();
    for (auto t : o.types) ts.push_back(std::string(ggml_type_name(t)));
    p.options["types"] = ts;
  }
  if (!o.keep.empty()) {
    json ks = json::array();
    for (auto& k : o.keep) ks.push_back(k.pattern + "=" + std::string(ggml_type_name(k.type)));
    p.options["keep"] = ks;
  }

  const PresetInfo* preset = nullptr;
  if (o.policy.rfind("preset:", 0) == 0) {
    preset = find_preset(o.policy.substr(7));
    if (!preset) {
      std::string names;
      for (auto& q : presets()) names += std::string(names.empty() ? "" : ", ") + q.name;
      fail("--policy {}: unknown preset (known: {})", o.policy, names);
    }
    p.policy = std::string("preset:") + preset->name;
    p.ftype = preset->ftype;
  } else if (o.policy != "optimal" && o.policy != "threshold") {
    fail("--policy \"{}\": expected optimal, threshold or preset:NAME (e.g. preset:Q4_K_M)", o.policy);
  }
  if (o.policy == "optimal" && o.budget_kind == "none")
    fail("the optimal policy needs a budget: --target-size, --target-bpw, --fit-memory or --max-kld");

  // The metadata block depends only on identity fields set above, never on the solve.
  p.metadata_bytes = encoded_size(plan_metadata(p));
  const int64_t fixed = p.overhead_bytes + p.metadata_bytes;

  // Pins.
  const size_t n = s.tensors.size();
  std::vector<std::optional<GgmlType>> pinned(n);
  std::vector<std::regex> res;
  for (auto& k : o.keep) res.emplace_back(k.pattern);
  for (size_t i = 0; i < n; ++i) {
    if (!s.tensors[i].quantizable) continue;
    for (size_t k = 0; k < res.size(); ++k)
      if (std::regex_search(s.tensors[i].name, res[k])) {
        pinned[i] = o.keep[k].type;
        break;
      }
  }

  // Resolve the budget to a file-size cap.
  int64_t cap = -1;
  if (o.budget_kind == "target-size") {
    cap = int64_t(o.budget_value);
  } else if (o.budget_kind == "target-bpw") {
    if (!(o.budget_value > 0)) fail("--target-bpw must be positive");
    cap = int64_t(std::floor(o.budget_value * double(s.total_params()) / 8.0)) + fixed;
  } else if (o.budget_kind == "fit-memory") {
    const MemoryEstimate m = estimate_runtime_memory(s, o.ctx, o.kv_type, o.parallel);
    cap = int64_t(o.budget_value) - m.total();
    p.budget.details = {{"ctx", o.ctx}, {"kv_type", o.kv_type}, {"parallel", o.parallel},
                        {"kv_cache_bytes", m.kv_bytes}, {"compute_bytes", m.compute_bytes}};
    if (cap <= fixed)
      fail("--fit-memory {}: the KV cache ({}) and compute buffers ({}) alone need more than that", fmt_bytes(int64_t(o.budget_value)),
           fmt_bytes(m.kv_bytes), fmt_bytes(m.compute_bytes));
  } else if (o.budget_kind == "max-kld") {
    if (!(o.budget_value > 0)) fail("--max-kld must be positive");
  } else if (o.budget_kind != "none") {
    fail("unknown budget kind {}", o.budget_kind);
  }
  p.budget.resolved_bytes = cap > 0 ? cap : 0;

  if (o.policy == "optimal") {
    std::vector<Item> items(n);
    std::vector<std::vector<GgmlType>> types(n);
    for (size_t i = 0; i < n; ++i) {
      const auto& t = s.tensors[i];
      if (pinned[i]) {
        types[i].push_back(*pinned[i]);
        const Candidate* c = t.find(*pinned[i]);
        items[i].choices.push_back({pad32(bytes_at(t, *pinned[i])), c ? c->dloss : 0.0});
        continue;
      }
      for (const auto& c : t.candidates) {
        if (t.quantizable && !o.types.empty() && std::find(o.types.begin(), o.types.end(), c.type) == o.types.end())
          continue;
        types[i].push_back(c.type);
        items[i].choices.push_back({pad32(c.bytes), c.dloss});
      }
      if (items[i].choices.empty())
        fail("tensor {}: none of its measured candidate types is allowed by --types", t.name);
    }
    const int64_t lo = min_total_bytes(items) + fixed, hi = max_total_bytes(items) + fixed;
    std::optional<Solution> sol;
    if (o.budget_kind == "max-kld") {
      sol = solve_max_cost(items, o.budget_value);
      if (!sol) {
        double best = 0;
        for (auto& it : items) {
          double m = it.choices[0].cost;
          for (auto& c : it.choices) m = std::min(m, c.cost);
          best += m;
        }
        fail("--max-kld {}: unreachable; the best plan predicts {:.6g} (file sizes range from {} to {})",
             o.budget_value, best, fmt_bytes(lo), fmt_bytes(hi));
      }
      p.budget.resolved_bytes = sol->bytes + fixed;
    } else {
      sol = solve_budget(items, cap - fixed);
      if (!sol)
        fail("budget {} is infeasible: the smallest achievable file is {}, the largest {}", fmt_bytes(cap),
             fmt_bytes(lo), fmt_bytes(hi));
    }
    for (size_t i = 0; i < n; ++i) p.tensors.push_back(make_tensor(s.tensors[i], types[i][sol->pick[i]]));
  } else {
    std::vector<GgmlType> chosen(n);
    if (preset) {
      chosen = preset_types(*preset, s);
    } else {  // threshold
      if (!(o.threshold_top >= 0 && o.threshold_top <= 1)) fail("--top must be in [0, 1] (got {})", o.threshold_top);
      std::vector<size_t> q;
      for (size_t i = 0; i < n; ++i) {
        chosen[i] = s.tensors[i].candidates.empty() ? GgmlType::F32 : s.tensors[i].candidates.front().type;
        if (s.tensors[i].quantizable) q.push_back(i);
      }
      std::stable_sort(q.begin(), q.end(), [&](size_t a, size_t b) {
        if (s.tensors[a].grad_norm != s.tensors[b].grad_norm) return s.tensors[a].grad_norm > s.tensors[b].grad_norm;
        return s.tensors[a].name < s.tensors[b].name;
      });
      const size_t top = size_t(std::ceil(o.threshold_top * double(q.size()) - 1e-9));
      for (size_t r = 0; r < q.size(); ++r)
        chosen[q[r]] = shape_fallback(r < top ? GgmlType::Q8_0 : GgmlType::Q4_K, s.tensors[q[r]].cols);
    }
    for (size_t i = 0; i < n; ++i) {
      GgmlType t = chosen[i];
      if (pinned[i]) t = preset ? shape_fallback(*pinned[i], s.tensors[i].cols) : *pinned[i];
      p.tensors.push_back(make_tensor(s.tensors[i], t));
    }
  }
  p.recompute_totals();
  if (cap > 0 && p.file_bytes > cap)
    fail("the {} plan is {}, above the budget of {}", p.policy, fmt_bytes(p.file_bytes), fmt_bytes(cap));
  return p;
}

std::vector<MetaValue> plan_metadata(const Plan& p, const std::string& imatrix_sha256,
                                     const std::string& hessian_sha256) {
  std::vector<MetaValue> kv;
  kv.push_back({"samq.version", true, 0, p.samq_version});
  const auto sha_or_none = [](const std::string& sha) {
    std::string s = sha.empty() ? "none" : sha;
    s.resize(64, ' ');
    return s;
  };
  kv.push_back({"samq.imatrix", true, 0, sha_or_none(imatrix_sha256)});
  kv.push_back({"samq.hessian", true, 0, sha_or_none(hessian_sha256)});
  json id = {{"schema", "samq.plan/1"},
             {"samq_version", p.samq_version},
             {"policy", p.policy},
             {"budget", {{"kind", p.budget.kind}, {"value", p.budget.value}}},
             {"sensitivity_sha256", p.sensitivity_sha256},
             {"model_sha256", p.model_sha256}};
  kv.push_back({"samq.plan", true, 0, id.dump()});
  const int64_t sz = encoded_size(kv);
  kv.back().str.append(size_t(pad32(sz) - sz), ' ');
  return kv;
}

int64_t encoded_size(const std::vector<MetaValue>& kvs) {
  int64_t n = 0;
  for (const auto& k : kvs) n += 8 + int64_t(k.key.size()) + 4 + (k.is_string ? 8 + int64_t(k.str.size()) : 4);
  return n;
}

bool is_replaced_key(const std::string& key) {
  return key.rfind("samq.", 0) == 0;
}

json plan_to_json(const Plan& p) {
  json ts = json::array();
  for (const auto& t : p.tensors) {
    json r = {{"name", t.name}, {"type", std::string(ggml_type_name(t.type))}, {"bytes", t.bytes}};
    r["dloss"] = t.dloss ? json(*t.dloss) : json(nullptr);
    r["params"] = t.params;
    r["layer"] = t.layer;
    r["kind"] = t.kind;
    ts.push_back(r);
  }
  json budget = {{"kind", p.budget.kind}, {"value", p.budget.value}, {"resolved_bytes", p.budget.resolved_bytes}};
  if (!p.budget.details.is_null()) budget["details"] = p.budget.details;
  return {{"schema", "samq.plan/1"},
          {"samq_version", p.samq_version},
          {"sensitivity", {{"path", p.sensitivity_path}, {"sha256", p.sensitivity_sha256}}},
          {"model", {{"sha256", p.model_sha256}}},
          {"budget", budget},
          {"policy", p.policy},
          {"options", p.options},
          {"ftype", p.ftype},
          {"header", {{"overhead_bytes", p.overhead_bytes}, {"metadata_bytes", p.metadata_bytes}}},
          {"tensors", ts},
          {"totals",
           {{"file_bytes", p.file_bytes},
            {"tensor_bytes", p.tensor_bytes},
            {"params", p.params},
            {"bpw", p.bpw},
            {"dloss", p.dloss},
            {"dloss_complete", p.dloss_complete}}}};
}

Plan plan_from_json(const json& j, const std::string& path) {
  auto need = [&](const json& o, const char* k, const std::string& where) -> const json& {
    if (!o.is_object() || !o.contains(k)) fail("{}: missing field {}{}", path, where, k);
    return o.at(k);
  };
  try {
    if (!j.is_object() || j.value("schema", "") != "samq.plan/1")
      fail("{}: field schema is not \"samq.plan/1\"", path);
    Plan p;
    p.samq_version = j.value("samq_version", "");
    if (j.contains("sensitivity")) {
      p.sensitivity_path = j["sensitivity"].value("path", "");
      p.sensitivity_sha256 = j["sensitivity"].value("sha256", "");
    }
    if (j.contains("model")) p.model_sha256 = j["model"].value("sha256", "");
    const json& b = need(j, "budget", "");
    p.budget.kind = b.value("kind", "none");
    p.budget.value = b.value("value", 0.0);
    p.budget.resolved_bytes = b.value("resolved_bytes", int64_t(0));
    if (b.contains("details")) p.budget.details = b["details"];
    p.policy = need(j, "policy", "").get<std::string>();
    if (j.contains("options")) p.options = j["options"];
    p.ftype = j.value("ftype", 0);
    const json& h = need(j, "header", "");
    p.overhead_bytes = need(h, "overhead_bytes", "header.").get<int64_t>();
    p.metadata_bytes = need(h, "metadata_bytes", "header.").get<int64_t>();
    const json& ts = need(j, "tensors", "");
    if (!ts.is_array()) fail("{}: field tensors is not an array", path);
    for (size_t i = 0; i < ts.size(); ++i) {
      const std::string w = fmt::format("tensors[{}].", i);
      PlanTensor t;
      t.name = need(ts[i], "name", w).get<std::string>();
      const std::string tn = need(ts[i], "type", w).get<std::string>();
      const auto ty = ggml_type_from_name(tn);
      if (!ty) fail("{}: {}type: unknown type \"{}\" for tensor {}", path, w, tn, t.name);
      t.type = *ty;
      t.bytes = need(ts[i], "bytes", w).get<int64_t>();
      if (ts[i].contains("dloss") && ts[i]["dloss"].is_number()) t.dloss = ts[i]["dloss"].get<double>();
      t.params = ts[i].value("params", int64_t(0));
      t.layer = ts[i].value("layer", layer_of(t.name));
      t.kind = ts[i].value("kind", kind_of(t.name));
      p.tensors.push_back(std::move(t));
    }
    const int ftype = p.ftype;
    p.recompute_totals();
    p.ftype = ftype;
    const int64_t stated = need(need(j, "totals", ""), "file_bytes", "totals.").get<int64_t>();
    if (stated != p.file_bytes)
      fail("{}: totals.file_bytes = {} disagrees with the tensors and header ({})", path, stated, p.file_bytes);
    return p;
  } catch (const json::exception& e) {
    fail("{}: malformed plan: {}", path, e.what());
  }
}

Plan read_plan(const std::string& path) {
  const std::string text = read_file(path);
  return plan_from_json(parse_json_text(text, path), path);
}

std::string tensor_types_path(const std::string& plan_path) {
  std::string stem = plan_path;
  if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".json") == 0) stem.resize(stem.size() - 5);
  return stem + ".tensor-types.txt";
}

std::string tensor_type_file(const Plan& p) {
  // One anchored, escaped pattern per quantized tensor. llama-quantize lower-cases patterns and
  // applies them with regex_search, first match wins (ggml-formats.md §5.5); names are lower
  // case already, and "\." survives lower-casing.
  std::string out;
  for (const auto& t : p.tensors) {
    if (t.type == GgmlType::F32) continue;
    std::string pat = "^";
    for (char c : t.name) {
      if (c == '.') pat += "\\.";
      else pat += c;
    }
    out += pat + "$=" + lower(std::string(ggml_type_name(t.type))) + "\n";
  }
  return out;
}

void write_plan(const Plan& p, const std::string& path) {
  write_file_atomic(path, plan_to_json(p).dump(1) + "\n");
  write_file_atomic(tensor_types_path(path), tensor_type_file(p));
}

}  // namespace samq::plan
