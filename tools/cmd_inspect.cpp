// samq inspect FILE.gguf|HF_DIR|FILE.safetensors [--json]: metadata, hyperparameters, a
// tensor table (name, shape, type, bytes) and totals with bits per weight per type and overall.
// GGUF shapes are printed in ggml order (ne[0] first, as llama.cpp's tools do); HF shapes in
// PyTorch order (rows first), as in the safetensors header. The JSON schema is
// docs/inspect-json.md.
#include <cstdio>
#include <cstring>
#include <optional>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "command.h"
#include "core/error.h"
#include "format/gguf.h"
#include "format/hparams.h"
#include "format/safetensors.h"

namespace samq::cli {
namespace {

using json = nlohmann::ordered_json;

struct InspectArgs {
  std::string path;
  bool json = false;
  bool no_tensors = false;
  size_t max_array = 8;
};

struct TypeTotals {
  int64_t tensors = 0, params = 0, bytes = 0;
};

struct Row {
  std::string name, shape, type;
  int64_t params, bytes;
};

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

json element_to_json(GgufType t, const uint8_t* p) {
  switch (t) {
    case GgufType::UINT8: return load<uint8_t>(p);
    case GgufType::INT8: return load<int8_t>(p);
    case GgufType::UINT16: return load<uint16_t>(p);
    case GgufType::INT16: return load<int16_t>(p);
    case GgufType::UINT32: return load<uint32_t>(p);
    case GgufType::INT32: return load<int32_t>(p);
    case GgufType::FLOAT32: return load<float>(p);
    case GgufType::BOOL: return p[0] != 0;
    case GgufType::UINT64: return load<uint64_t>(p);
    case GgufType::INT64: return load<int64_t>(p);
    case GgufType::FLOAT64: return load<double>(p);
    default: return nullptr;
  }
}

json value_to_json(const GgufValue& v, size_t max_array) {
  auto scalar = [](GgufType t, const GgufValue& s) -> json {
    switch (t) {
      case GgufType::BOOL: return s.get_bool();
      case GgufType::FLOAT32: return s.get_f32();
      case GgufType::FLOAT64: return s.get_f64();
      case GgufType::UINT64: return s.get_u64();
      case GgufType::STRING: return s.get_str();
      default: return s.get_int();
    }
  };
  json out;
  if (!v.is_array()) {
    out["type"] = gguf_type_name(v.type());
    out["value"] = scalar(v.type(), v);
    return out;
  }
  out["type"] = fmt::format("arr[{}]", gguf_type_name(v.elem_type()));
  out["count"] = v.size();
  const size_t n = std::min(v.size(), max_array);
  json elems = json::array();
  if (v.elem_type() == GgufType::STRING) {
    const auto& s = v.get_arr_str();
    for (size_t i = 0; i < n; ++i) elems.push_back(s[i]);
  } else {
    const size_t es = gguf_type_size(v.elem_type());
    auto bytes = v.array_bytes();
    for (size_t i = 0; i < n; ++i) elems.push_back(element_to_json(v.elem_type(), bytes.data() + i * es));
  }
  out[n < v.size() ? "first" : "value"] = elems;
  return out;
}

json hparams_to_json(const ModelHparams& h) {
  json j;
  j["arch"] = h.arch;
  if (!h.hf_architecture.empty()) j["hf_architecture"] = h.hf_architecture;
  j["n_vocab"] = h.n_vocab;
  j["n_ctx_train"] = h.n_ctx_train;
  j["n_embd"] = h.n_embd;
  j["n_layer"] = h.n_layer;
  j["n_head"] = h.n_head;
  j["n_head_kv"] = h.n_head_kv;
  j["head_dim"] = h.head_dim;
  j["n_ff"] = h.n_ff;
  j["rope_theta"] = h.rope_theta;
  j["rope_scaling"] = rope_scaling_name(h.rope_scaling);
  if (h.rope_scaling != RopeScalingType::None) j["rope_factor"] = h.rope_factor;
  if (h.rope_scaling == RopeScalingType::Llama3) {
    j["rope_low_freq_factor"] = h.rope_low_freq_factor;
    j["rope_high_freq_factor"] = h.rope_high_freq_factor;
    j["rope_orig_ctx"] = h.rope_orig_ctx;
  }
  j["rms_eps"] = h.rms_eps;
  j["tied_embeddings"] = h.tied_embeddings;
  j["attn_bias"] = h.attn_bias;
  j["qk_norm"] = h.qk_norm;
  j["bos_id"] = h.bos_id;
  j["eos_id"] = h.eos_id;
  j["source_dtype"] = h.source_dtype;
  return j;
}

void print_hparams(const ModelHparams& h) {
  std::printf("hparams: arch %s%s%s, n_vocab %lld, n_ctx_train %lld, n_embd %lld, n_layer %lld, n_head %lld, "
              "n_head_kv %lld, head_dim %lld, n_ff %lld\n",
              h.arch.c_str(), h.hf_architecture.empty() ? "" : " (", h.hf_architecture.empty() ? "" : (h.hf_architecture + ")").c_str(),
              (long long)h.n_vocab, (long long)h.n_ctx_train, (long long)h.n_embd, (long long)h.n_layer,
              (long long)h.n_head, (long long)h.n_head_kv, (long long)h.head_dim, (long long)h.n_ff);
  std::printf("         rope_theta %g, rope scaling %s", h.rope_theta, std::string(rope_scaling_name(h.rope_scaling)).c_str());
  if (h.rope_scaling == RopeScalingType::Linear) std::printf(" (factor %g)", h.rope_factor);
  if (h.rope_scaling == RopeScalingType::Llama3) {
    if (h.rope_factor > 0)
      std::printf(" (factor %g, low %g, high %g, original ctx %lld)", h.rope_factor, h.rope_low_freq_factor,
                  h.rope_high_freq_factor, (long long)h.rope_orig_ctx);
    else
      std::printf(" (factors in rope_freqs.weight)");
  }
  std::printf(", rms_eps %g, tied %s, attn_bias %s, qk_norm %s, bos %d, eos %d, dtype %s\n", h.rms_eps,
              h.tied_embeddings ? "yes" : "no", h.attn_bias ? "yes" : "no", h.qk_norm ? "yes" : "no", h.bos_id,
              h.eos_id, h.source_dtype.c_str());
}

// Shared tail: tensor table, totals per type and overall.
void report_tensors(const std::vector<Row>& rows, uint64_t file_bytes, bool no_tensors, json* js) {
  std::map<std::string, TypeTotals> by;
  TypeTotals all;
  size_t wname = 4, wshape = 5;
  for (const auto& r : rows) {
    auto& t = by[r.type];
    t.tensors++, t.params += r.params, t.bytes += r.bytes;
    all.tensors++, all.params += r.params, all.bytes += r.bytes;
    wname = std::max(wname, r.name.size());
    wshape = std::max(wshape, r.shape.size());
  }
  auto bpw = [](const TypeTotals& t) { return t.params ? 8.0 * double(t.bytes) / double(t.params) : 0.0; };
  if (js) {
    json arr = json::array();
    for (const auto& r : rows)
      arr.push_back({{"name", r.name}, {"shape", json::parse(r.shape)}, {"type", r.type}, {"params", r.params}, {"bytes", r.bytes}});
    if (!no_tensors) (*js)["tensors"] = arr;
    json bt = json::array();
    for (const auto& [name, t] : by)
      bt.push_back({{"type", name}, {"tensors", t.tensors}, {"params", t.params}, {"bytes", t.bytes}, {"bpw", bpw(t)}});
    (*js)["by_type"] = bt;
    (*js)["totals"] = {{"tensors", all.tensors}, {"params", all.params}, {"bytes", all.bytes}, {"bpw", bpw(all)},
                       {"file_bytes", file_bytes},
                       {"file_bpw", all.params ? 8.0 * double(file_bytes) / double(all.params) : 0.0}};
    return;
  }
  if (!no_tensors) {
    std::printf("\ntensors (%zu):\n  %-*s  %-*s  %-6s %12s\n", rows.size(), int(wname), "name", int(wshape), "shape",
                "type", "bytes");
    for (const auto& r : rows)
      std::printf("  %-*s  %-*s  %-6s %12lld\n", int(wname), r.name.c_str(), int(wshape), r.shape.c_str(),
                  r.type.c_str(), (long long)r.bytes);
  }
  std::printf("\nby type:\n  %-6s %8s %14s %14s %8s\n", "type", "tensors", "params", "bytes", "bpw");
  for (const auto& [name, t] : by)
    std::printf("  %-6s %8lld %14lld %14lld %8.4f\n", name.c_str(), (long long)t.tensors, (long long)t.params,
                (long long)t.bytes, bpw(t));
  std::printf("  %-6s %8lld %14lld %14lld %8.4f\n", "total", (long long)all.tensors, (long long)all.params,
              (long long)all.bytes, bpw(all));
  std::printf("file: %llu bytes, %.4f bits per weight over the whole file\n", (unsigned long long)file_bytes,
              all.params ? 8.0 * double(file_bytes) / double(all.params) : 0.0);
}

int inspect_gguf(const InspectArgs& a) {
  GgufFile f = GgufFile::open(a.path);
  json js;
  std::optional<ModelHparams> hp;
  std::string hp_error;
  try {
    hp = hparams_from_gguf(f);
  } catch (const Error& e) {
    hp_error = e.what();
  }
  if (a.json) {
    js["format"] = "gguf";
    js["path"] = a.path;
    js["file_bytes"] = f.file_size();
    js["version"] = f.version();
    js["alignment"] = f.alignment();
    js["data_offset"] = f.data_offset();
    json md = json::object();
    for (const auto& v : f.kv()) md[v.key()] = value_to_json(v, a.max_array);
    js["metadata"] = md;
    if (hp) js["hparams"] = hparams_to_json(*hp);
  } else {
    std::printf("%s: GGUF v%u, %llu bytes, alignment %u, data offset %llu, %zu tensors, %zu metadata keys\n\n",
                a.path.c_str(), f.version(), (unsigned long long)f.file_size(), f.alignment(),
                (unsigned long long)f.data_offset(), f.tensors().size(), f.kv().size());
    size_t wkey = 0;
    for (const auto& v : f.kv()) wkey = std::max(wkey, v.key().size());
    std::printf("metadata:\n");
    for (const auto& v : f.kv()) {
      std::string type = v.is_array() ? fmt::format("arr[{}]", gguf_type_name(v.elem_type())) : std::string(gguf_type_name(v.type()));
      std::printf("  %-*s  %-9s %s\n", int(wkey), v.key().c_str(), type.c_str(), v.to_string(a.max_array).c_str());
    }
    std::printf("\n");
    if (hp) print_hparams(*hp);
    else if (!f.architecture().empty()) std::printf("hparams: not a supported model (%s)\n", hp_error.c_str());
  }
  std::vector<Row> rows;
  for (const auto& t : f.tensors()) {
    std::string shape = "[";
    for (uint32_t d = 0; d < t.n_dims; ++d) shape += fmt::format("{}{}", d ? ", " : "", t.ne[d]);
    shape += "]";
    rows.push_back({t.name, shape, std::string(ggml_type_name(t.type)), t.n_elements(), int64_t(t.nbytes)});
  }
  report_tensors(rows, f.file_size(), a.no_tensors, a.json ? &js : nullptr);
  if (a.json) std::printf("%s\n", js.dump(1).c_str());
  return 0;
}

int inspect_hf(const InspectArgs& a) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool dir = fs::is_directory(a.path, ec);
  SafetensorsModel m = SafetensorsModel::open(a.path);
  std::optional<ModelHparams> hp;
  const fs::path cfg = dir ? fs::path(a.path) / "config.json" : fs::path(a.path).parent_path() / "config.json";
  if (dir) hp = hparams_from_hf_config(a.path);  // a directory must have a valid config
  else if (fs::exists(cfg, ec)) hp = hparams_from_hf_config(cfg.string());
  uint64_t file_bytes = 0;
  for (const auto& f : m.files()) file_bytes += fs::file_size(f, ec);
  json js;
  if (a.json) {
    js["format"] = "safetensors";
    js["path"] = a.path;
    js["file_bytes"] = file_bytes;
    js["files"] = m.files();
    json md = json::object();
    for (const auto& [k, v] : m.metadata()) md[k] = v;
    js["metadata"] = md;
    if (hp) js["hparams"] = hparams_to_json(*hp);
  } else {
    std::printf("%s: safetensors, %zu file(s), %llu bytes, %zu tensors\n", a.path.c_str(), m.files().size(),
                (unsigned long long)file_bytes, m.tensors().size());
    for (const auto& f : m.files()) std::printf("  %s\n", f.c_str());
    if (!m.metadata().empty()) {
      std::printf("\nmetadata:\n");
      for (const auto& [k, v] : m.metadata()) std::printf("  %s = %s\n", k.c_str(), v.c_str());
    }
    std::printf("\n");
    if (hp) print_hparams(*hp);
  }
  std::vector<Row> rows;
  for (const auto& t : m.tensors()) {
    std::string shape = "[";
    for (size_t d = 0; d < t.shape.size(); ++d) shape += fmt::format("{}{}", d ? ", " : "", t.shape[d]);
    shape += "]";
    std::string type(st_dtype_name(t.dtype));
    for (auto& c : type) c = char(std::tolower((unsigned char)c));  // ggml spelling: bf16, f16, f32
    rows.push_back({t.name, shape, type, t.n_elements(), int64_t(t.nbytes)});
  }
  report_tensors(rows, file_bytes, a.no_tensors, a.json ? &js : nullptr);
  if (a.json) std::printf("%s\n", js.dump(1).c_str());
  return 0;
}

bool looks_like_gguf(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char m[4] = {};
  const bool ok = std::fread(m, 1, 4, f) == 4 && std::memcmp(m, "GGUF", 4) == 0;
  std::fclose(f);
  return ok;
}

std::function<int()> setup(CLI::App& sub) {
  auto a = std::make_shared<InspectArgs>();
  sub.add_option("path", a->path, "A .gguf file, an HF model directory, or a .safetensors/.index.json file")
      ->required()
      ->check(CLI::ExistingPath);
  sub.add_flag("--json", a->json, "Print one JSON object (schema: docs/inspect-json.md)");
  sub.add_flag("--no-tensors", a->no_tensors, "Leave out the per-tensor table (totals only)");
  sub.add_option("--max-array", a->max_array, "Array elements shown before summarizing")->capture_default_str();
  return [a]() -> int {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(a->path, ec) && (a->path.ends_with(".gguf") || looks_like_gguf(a->path)))
      return inspect_gguf(*a);
    const bool st_name = a->path.ends_with(".safetensors") || a->path.ends_with(".json");
    if (fs::is_directory(a->path, ec) || st_name) return inspect_hf(*a);
    try {
      return inspect_hf(*a);
    } catch (const Error& e) {
      fail("{}: neither a GGUF file (no \"GGUF\" magic) nor safetensors ({})", a->path, e.what());
    }
  };
}

}  // namespace

SAMQ_COMMAND(inspect, 10, "Show a GGUF file's or HF model's metadata, hyperparameters and tensors", setup);

}  // namespace samq::cli
