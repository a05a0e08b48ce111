#include "plan/sensitivity.h"

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/sha256.h"
#include "plan/json_text.h"

namespace samq::plan {
namespace {
using nlohmann::json;

const json& need(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) fail("{}: missing field {}", where, key);
  return j.at(key);
}

double num(const json& j, const char* key, const std::string& where) {
  const json& v = need(j, key, where);
  if (!v.is_number()) fail("{}.{}: expected a number", where, key);
  return v.get<double>();
}

int64_t integer(const json& j, const char* key, const std::string& where) {
  const json& v = need(j, key, where);
  if (!v.is_number_integer()) fail("{}.{}: expected an integer", where, key);
  return v.get<int64_t>();
}

std::string str_or(const json& j, const char* key, std::string def = "") {
  if (j.is_object() && j.contains(key) && j.at(key).is_string()) return j.at(key).get<std::string>();
  return def;
}

int64_t int_or(const json& j, const char* key, int64_t def) {
  if (j.is_object() && j.contains(key) && j.at(key).is_number_integer()) return j.at(key).get<int64_t>();
  return def;
}
}  // namespace

const Candidate* TensorSensitivity::find(GgmlType t) const {
  for (const auto& c : candidates)
    if (c.type == t) return &c;
  return nullptr;
}

int64_t Sensitivity::total_params() const {
  int64_t n = 0;
  for (const auto& t : tensors) n += t.params;
  return n;
}

const TensorSensitivity* Sensitivity::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

int layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  size_t i = 4, start = 4;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') ++i;
  if (i == start || i >= name.size() || name[i] != '.') return -1;
  return std::stoi(name.substr(start, i - start));
}

std::string kind_of(const std::string& name) {
  std::string base = name;
  if (base.size() > 7 && base.compare(base.size() - 7, 7, ".weight") == 0) base.resize(base.size() - 7);
  if (layer_of(name) >= 0) {
    const size_t dot = base.find('.', 4);
    return base.substr(dot + 1);
  }
  return base;
}

Sensitivity parse_sensitivity(const json& j, const std::string& file) {
  Sensitivity s;
  s.path = file;
  s.raw = j;
  if (!j.is_object()) fail("{}: not a JSON object", file);
  const std::string schema = str_or(j, "schema");
  if (schema != "samq.sensitivity/1")
    fail("{}: field schema is \"{}\", expected \"samq.sensitivity/1\"", file, schema);
  if (j.contains("model")) {
    const json& m = j.at("model");
    s.model.path = str_or(m, "path");
    s.model.sha256 = str_or(m, "sha256");
    s.model.architecture = str_or(m, "architecture");
    s.model.n_layer = int(int_or(m, "n_layer", 0));
    s.model.n_params = int_or(m, "n_params", 0);
    s.model.n_head = int(int_or(m, "n_head", 0));
    s.model.n_head_kv = int(int_or(m, "n_head_kv", 0));
    s.model.head_dim = int(int_or(m, "head_dim", 0));
    s.model.n_expert = int(int_or(m, "n_expert", 0));
  }
  s.gguf_overhead_bytes = integer(j, "gguf_overhead_bytes", file);
  if (s.gguf_overhead_bytes < 24) fail("{}: gguf_overhead_bytes = {} is impossible (< 24)", file, s.gguf_overhead_bytes);
  const json& ts = need(j, "tensors", file);
  if (!ts.is_array() || ts.empty()) fail("{}: field tensors must be a non-empty array", file);
  int max_layer = -1;
  for (size_t i = 0; i < ts.size(); ++i) {
    const json& t = ts[i];
    const std::string where = fmt::format("{}: tensors[{}]", file, i);
    TensorSensitivity r;
    r.name = str_or(t, "name");
    if (r.name.empty()) fail("{}.name: missing or empty", where);
    const std::string w = fmt::format("{}: tensor {}", file, r.name);
    r.layer = int(int_or(t, "layer", layer_of(r.name)));
    r.kind = str_or(t, "kind", kind_of(r.name));
    const json& shape = need(t, "shape", w);
    if (!shape.is_array() || shape.empty() || shape.size() > 4)
      fail("{}.shape: expected an array of 1..4 integers", w);
    // shape = (rows, cols) = (out_features, in_features); any leading dims fold into rows.
    r.rows = 1;
    for (size_t k = 0; k < shape.size(); ++k) {
      if (!shape[k].is_number_integer() || shape[k].get<int64_t>() <= 0)
        fail("{}.shape[{}]: expected a positive integer", w, k);
      if (k + 1 < shape.size()) r.rows *= shape[k].get<int64_t>();
    }
    r.cols = shape.back().get<int64_t>();
    r.params = int_or(t, "params", r.rows * r.cols);
    if (r.params != r.rows * r.cols) fail("{}.params = {} disagrees with shape ({} elements)", w, r.params, r.rows * r.cols);
    r.source_type = str_or(t, "source_type");
    if (t.contains("grad_norm") && t["grad_norm"].is_number()) r.grad_norm = t["grad_norm"].get<double>();
    if (t.contains("fisher_trace") && t["fisher_trace"].is_number()) r.fisher_trace = t["fisher_trace"].get<double>();
    r.quantizable = t.contains("quantizable") ? t.at("quantizable").get<bool>() : true;
    const json& cands = need(t, "candidates", w);
    if (!cands.is_object() || cands.empty()) fail("{}.candidates: expected a non-empty object", w);
    for (auto it = cands.begin(); it != cands.end(); ++it) {
      const auto type = ggml_type_from_name(it.key());
      const std::string cw = fmt::format("{}.candidates.{}", w, it.key());
      if (!type) fail("{}: unknown ggml type name", cw);
      Candidate c;
      c.type = *type;
      c.bytes = integer(it.value(), "bytes", cw);
      c.dloss = num(it.value(), "dloss", cw);
      const auto& info = ggml_type_info(c.type);
      if (r.cols % info.block_size != 0)
        fail("{}: rows of {} elements are not a multiple of the block ({})", cw, r.cols, info.block_size);
      const int64_t expect = r.rows * ggml_row_size(c.type, r.cols);
      if (c.bytes != expect) fail("{}: bytes = {}, but the shape gives {}", cw, c.bytes, expect);
      if (!(c.dloss == c.dloss)) fail("{}: dloss is NaN", cw);
      r.candidates.push_back(c);
    }
    max_layer = std::max(max_layer, r.layer);
    s.tensors.push_back(std::move(r));
  }
  if (s.model.n_layer == 0) s.model.n_layer = max_layer + 1;
  if (s.model.n_params == 0) s.model.n_params = s.total_params();
  return s;
}

Sensitivity read_sensitivity(const std::string& path) {
  const std::string text = read_file(path);
  Sensitivity s = parse_sensitivity(parse_json_text(text, path), path);
  s.sha256 = sha256_hex(text.data(), text.size());
  return s;
}

Sensitivity with_signal(const Sensitivity& s, const std::string& signal) {
  if (signal.empty() || signal == "dloss") return s;
  Sensitivity r = s;
  const json* ts = r.raw.is_object() && r.raw.contains("tensors") ? &r.raw.at("tensors") : nullptr;
  for (size_t i = 0; i < r.tensors.size(); ++i) {
    auto& t = r.tensors[i];
    const json* cands = ts && i < ts->size() && (*ts)[i].contains("candidates") ? &(*ts)[i].at("candidates") : nullptr;
    for (auto& c : t.candidates) {
      const std::string tn(ggml_type_name(c.type));
      const json* sig = cands && cands->contains(tn) && cands->at(tn).contains("signals")
                            ? &cands->at(tn).at("signals") : nullptr;
      if (sig && sig->contains(signal) && sig->at(signal).is_number()) {
        c.dloss = sig->at(signal).get<double>();
        continue;
      }
      if (!t.quantizable) continue;  // kept as is (f32 norms: dloss 0)
      std::string have;
      if (sig)
        for (auto it = sig->begin(); it != sig->end(); ++it) have += (have.empty() ? "" : ", ") + it.key();
      fail("{}: tensor {}: candidates.{}.signals has no \"{}\" (--signal; it has: {})", s.path.empty() ? "sensitivity" : s.path,
           t.name, tn, signal, have.empty() ? "no signals" : have);
    }
  }
  return r;
}

}  // namespace samq::plan
