// ModelHparams from HF config.json (transformers' LlamaConfig/MistralConfig/Qwen2Config/
// Qwen3Config field names and defaults) and from GGUF metadata (llama.cpp's key names,
// ggml-formats.md §1.6).
#include "format/hparams.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "format/gguf.h"

namespace samq {

using json = nlohmann::json;

std::string_view rope_scaling_name(RopeScalingType t) {
  switch (t) {
    case RopeScalingType::None: return "none";
    case RopeScalingType::Linear: return "linear";
    case RopeScalingType::Llama3: return "llama3";
  }
  return "?";
}

void ModelHparams::validate(const std::string& source) const {
  auto pos = [&](int64_t v, const char* field) {
    if (v <= 0) fail("{}: {} must be positive, got {}", source, field, v);
  };
  pos(n_vocab, "n_vocab (vocab_size)");
  pos(n_ctx_train, "n_ctx_train (max_position_embeddings)");
  pos(n_embd, "n_embd (hidden_size)");
  pos(n_layer, "n_layer (num_hidden_layers)");
  pos(n_head, "n_head (num_attention_heads)");
  pos(n_head_kv, "n_head_kv (num_key_value_heads)");
  pos(head_dim, "head_dim");
  pos(n_ff, "n_ff (intermediate_size)");
  if (n_head % n_head_kv != 0)
    fail("{}: n_head = {} is not a multiple of n_head_kv = {}", source, n_head, n_head_kv);
  if (head_dim % 2 != 0) fail("{}: head_dim = {} must be even for RoPE", source, head_dim);
  if (!(rope_theta > 0)) fail("{}: rope_theta must be positive, got {}", source, rope_theta);
  if (!(rms_eps > 0)) fail("{}: rms_norm_eps must be positive, got {}", source, rms_eps);
  if (rope_scaling != RopeScalingType::None && !(rope_factor > 0))
    fail("{}: rope scaling factor must be positive, got {}", source, rope_factor);
  if (rope_scaling == RopeScalingType::Llama3) {
    if (!(rope_high_freq_factor > rope_low_freq_factor))
      fail("{}: llama3 rope scaling needs high_freq_factor ({}) > low_freq_factor ({})", source,
           rope_high_freq_factor, rope_low_freq_factor);
    if (rope_orig_ctx < 0) fail("{}: original_max_position_embeddings must be positive", source);
  }
}

namespace {

// Typed field access with errors naming the source and the field.
struct Fields {
  const json& j;
  const std::string& src;

  const json* get(const char* k) const {
    auto it = j.find(k);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  int64_t integer(const char* k, std::optional<int64_t> def = std::nullopt) const {
    const json* v = get(k);
    if (!v) {
      if (def) return *def;
      fail("{}: missing field '{}'", src, k);
    }
    if (v->is_number_integer()) return v->get<int64_t>();
    if (v->is_number_float()) {  // 4096.0 is accepted; range-checked before the cast
      const double d = v->get<double>();
      if (std::fabs(d) < 9.0e18 && d == std::floor(d)) return int64_t(d);
    }
    fail("{}: field '{}' must be an integer, found {}", src, k, v->dump());
  }
  double number(const json& obj, const char* k, double def, const std::string& where) const {
    auto it = obj.find(k);
    if (it == obj.end() || it->is_null()) return def;
    if (!it->is_number()) fail("{}: field '{}{}' must be a number, found {}", src, where, k, it->dump());
    return it->get<double>();
  }
  bool boolean(const char* k, bool def) const {
    const json* v = get(k);
    if (!v) return def;
    if (!v->is_boolean()) fail("{}: field '{}' must be true or false, found {}", src, k, v->dump());
    return v->get<bool>();
  }
  int32_t token_id(const char* k) const {
    const json* v = get(k);
    if (!v) return -1;
    if (v->is_array()) {
      if (v->empty()) return -1;
      v = &(*v)[0];
    }
    if (!v->is_number_integer()) fail("{}: field '{}' must be a token id, found {}", src, k, v->dump());
    return int32_t(v->get<int64_t>());
  }
};

struct ArchInfo {
  const char* hf;
  const char* model_type;
  const char* arch;
};
constexpr ArchInfo kArchs[] = {
    {"LlamaForCausalLM", "llama", "llama"},
    {"MistralForCausalLM", "mistral", "llama"},
    {"Qwen2ForCausalLM", "qwen2", "qwen2"},
    {"Qwen3ForCausalLM", "qwen3", "qwen3"},
    {"Qwen3MoeForCausalLM", "qwen3_moe", "qwen3moe"},
    {"MixtralForCausalLM", "mixtral", "llama"},
    {"Phi3ForCausalLM", "phi3", "phi3"},
};

// MoE fields of config.json (qwen3moe). Hub checkpoints say num_experts, some exports
// num_local_experts (Mixtral's name); both are accepted, and must agree when both are present.
void parse_moe(const Fields& f, ModelHparams& hp) {
  const std::string& src = f.src;
  const json* ne = f.get("num_experts");
  const json* nl = f.get("num_local_experts");
  if (!ne && !nl) fail("{}: a {} model needs 'num_experts' (or 'num_local_experts')", src, hp.hf_architecture);
  const int64_t a = ne ? f.integer("num_experts") : -1, b = nl ? f.integer("num_local_experts") : -1;
  if (ne && nl && a != b) fail("{}: 'num_experts' = {} and 'num_local_experts' = {} disagree", src, a, b);
  hp.n_expert = ne ? a : b;
  hp.n_expert_used = f.integer("num_experts_per_tok");
  if (hp.hf_architecture == "MixtralForCausalLM") {
    // Mixtral: every expert has the dense width, and its router always renormalises the top-k
    // weights (transformers' MixtralSparseMoeBlock; llama.cpp's llama graph likewise).
    hp.n_ff_exp = hp.n_ff;
    hp.expert_weights_norm = true;
    if (const json* v = f.get("norm_topk_prob"))
      if (!(v->is_boolean() && v->get<bool>()))
        fail("{}: 'norm_topk_prob' = {}: Mixtral always renormalises the top-k expert weights", src, v->dump());
  } else {
    hp.n_ff_exp = f.integer("moe_intermediate_size");
    hp.expert_weights_norm = f.boolean("norm_topk_prob", false);
  }
  if (hp.n_expert <= 1) fail("{}: 'num_experts' must be at least 2, got {}", src, hp.n_expert);
  if (hp.n_expert_used <= 0 || hp.n_expert_used > hp.n_expert)
    fail("{}: 'num_experts_per_tok' = {} must be in 1..num_experts ({})", src, hp.n_expert_used, hp.n_expert);
  if (hp.n_ff_exp <= 0) fail("{}: 'moe_intermediate_size' must be positive, got {}", src, hp.n_ff_exp);
  // Dense layers among the sparse ones are not supported (llama.cpp's qwen3moe has none either).
  if (f.integer("decoder_sparse_step", 1) != 1)
    fail("{}: 'decoder_sparse_step' = {} is not supported (samq needs every layer sparse: 1)", src,
         f.integer("decoder_sparse_step", 1));
  if (const json* m = f.get("mlp_only_layers"))
    if (!m->is_array() || !m->empty())
      fail("{}: 'mlp_only_layers' = {} is not supported (samq needs every layer sparse: [])", src, m->dump());
  for (const char* k : {"shared_expert_intermediate_size", "n_shared_experts"})
    if (const json* v = f.get(k))
      if (!(v->is_number() && v->get<double>() == 0))
        fail("{}: '{}' = {}: shared experts are not supported", src, k, v->dump());
}

void parse_rope(const Fields& f, const json& r, const std::string& where, ModelHparams& hp) {
  if (!r.is_object()) fail("{}: field '{}' must be an object, found {}", f.src, where, r.dump());
  std::string type = "default";
  for (const char* k : {"rope_type", "type"}) {
    auto it = r.find(k);
    if (it != r.end() && !it->is_null()) {
      if (!it->is_string()) fail("{}: field '{}.{}' must be a string", f.src, where, k);
      type = it->get<std::string>();
      break;
    }
  }
  const std::string w = where + ".";
  if (r.contains("rope_theta")) hp.rope_theta = float(f.number(r, "rope_theta", hp.rope_theta, w));
  if (type == "default") {
    hp.rope_scaling = RopeScalingType::None;
  } else if (type == "linear") {
    hp.rope_scaling = RopeScalingType::Linear;
    hp.rope_factor = float(f.number(r, "factor", 1.0, w));
  } else if (type == "llama3") {
    hp.rope_scaling = RopeScalingType::Llama3;
    hp.rope_factor = float(f.number(r, "factor", 8.0, w));
    hp.rope_low_freq_factor = float(f.number(r, "low_freq_factor", 1.0, w));
    hp.rope_high_freq_factor = float(f.number(r, "high_freq_factor", 4.0, w));
    const double orig = f.number(r, "original_max_position_embeddings", 8192, w);
    if (!(orig >= 0 && orig < 9.0e18)) fail("{}: {}original_max_position_embeddings = {} is out of range", f.src, w, orig);
    hp.rope_orig_ctx = int64_t(orig);
  } else {
    fail("{}: {}rope_type '{}' is not supported (samq supports default, linear, llama3)", f.src, w, type);
  }
}

std::string dtype_name(const std::string& d) {
  if (d == "bfloat16") return "bf16";
  if (d == "float16") return "f16";
  if (d == "float32") return "f32";
  return d;
}

}  // namespace

ModelHparams hparams_from_hf_config_json(std::string_view text, const std::string& src) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: does not parse as JSON: {}", src, e.what());
  }
  if (!j.is_object()) fail("{}: expected a JSON object", src);
  Fields f{j, src};
  ModelHparams hp;

  const ArchInfo* arch = nullptr;
  std::string named;
  if (const json* a = f.get("architectures")) {
    if (!a->is_array() || a->empty() || !(*a)[0].is_string())
      fail("{}: field 'architectures' must be a non-empty array of strings", src);
    named = (*a)[0].get<std::string>();
    for (const auto& ai : kArchs)
      if (named == ai.hf) arch = &ai;
  } else if (const json* mt = f.get("model_type")) {
    if (!mt->is_string()) fail("{}: field 'model_type' must be a string", src);
    named = mt->get<std::string>();
    for (const auto& ai : kArchs)
      if (named == ai.model_type) arch = &ai;
  } else {
    fail("{}: neither 'architectures' nor 'model_type' is present", src);
  }
  if (!arch)
    fail("{}: architecture '{}' is not supported (samq supports LlamaForCausalLM, MistralForCausalLM, "
         "MixtralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM, Phi3ForCausalLM)",
         src, named);
  hp.arch = arch->arch;
  hp.hf_architecture = arch->hf;

  hp.n_vocab = f.integer("vocab_size");
  hp.n_ctx_train = f.integer("max_position_embeddings");
  hp.n_embd = f.integer("hidden_size");
  hp.n_layer = f.integer("num_hidden_layers");
  hp.n_head = f.integer("num_attention_heads");
  hp.n_head_kv = f.integer("num_key_value_heads", hp.n_head);
  hp.n_ff = f.integer("intermediate_size");
  if (hp.n_head <= 0) fail("{}: num_attention_heads must be positive, got {}", src, hp.n_head);
  // transformers: Qwen3Config defaults head_dim to 128; the others to hidden_size / heads.
  hp.head_dim = f.integer("head_dim", hp.arch == "qwen3" || hp.arch == "qwen3moe" ? 128 : hp.n_embd / hp.n_head);
  hp.rms_eps = float(f.number(j, "rms_norm_eps", 1e-6, ""));

  // RoPE: newer transformers put theta and scaling in rope_parameters; older configs use
  // rope_theta plus an optional rope_scaling object.
  hp.rope_theta = float(f.number(j, "rope_theta", 10000.0, ""));
  if (const json* rp = f.get("rope_parameters")) parse_rope(f, *rp, "rope_parameters", hp);
  if (const json* rs = f.get("rope_scaling")) parse_rope(f, *rs, "rope_scaling", hp);

  hp.tied_embeddings = f.boolean("tie_word_embeddings", false);
  // Qwen2 always has q/k/v biases (no config flag); Llama/Mistral/Qwen3 via attention_bias.
  hp.attn_bias = hp.arch == "qwen2" ? true : f.boolean("attention_bias", false);
  hp.qk_norm = hp.arch == "qwen3" || hp.arch == "qwen3moe";
  if (hp.arch == "qwen3moe" || hp.hf_architecture == "MixtralForCausalLM") parse_moe(f, hp);
  // Sliding-window attention. Mistral and Phi-3 apply config.json's sliding_window to every
  // layer (null: none); Qwen2/Qwen3 only with use_sliding_window, which samq does not support.
  if (hp.hf_architecture == "MistralForCausalLM" || hp.hf_architecture == "MixtralForCausalLM" || hp.arch == "phi3") {
    hp.n_swa = f.integer("sliding_window", 0);
    if (hp.n_swa < 0) fail("{}: 'sliding_window' must be positive or null, got {}", src, hp.n_swa);
  } else if (f.boolean("use_sliding_window", false)) {
    fail("{}: 'use_sliding_window' = true is not supported for {} (sliding-window attention on some layers)", src,
         hp.hf_architecture);
  }
  if (hp.arch == "phi3") {
    hp.fused_qkv_gate_up = true;
    if (hp.attn_bias) fail("{}: 'attention_bias' = true is not supported for Phi3ForCausalLM", src);
    // Partial rotary (Phi-4-mini) and long-context RoPE factors are not supported.
    for (const char* k : {"rope_parameters", "rope_scaling"})
      if (const json* r = f.get(k))
        if (r->is_object() && r->contains("partial_rotary_factor") && !(*r)["partial_rotary_factor"].is_null() &&
            f.number(*r, "partial_rotary_factor", 1.0, std::string(k) + ".") != 1.0)
          fail("{}: {}.partial_rotary_factor = {} is not supported (samq rotates whole heads)", src, k,
               (*r)["partial_rotary_factor"].dump());
    if (const json* v = f.get("partial_rotary_factor"))
      if (!(v->is_number() && v->get<double>() == 1.0))
        fail("{}: 'partial_rotary_factor' = {} is not supported (samq rotates whole heads)", src, v->dump());
  }
  hp.bos_id = f.token_id("bos_token_id");
  hp.eos_id = f.token_id("eos_token_id");
  for (const char* k : {"dtype", "torch_dtype"}) {
    if (const json* d = f.get(k)) {
      if (!d->is_string()) fail("{}: field '{}' must be a string", src, k);
      hp.source_dtype = dtype_name(d->get<std::string>());
      break;
    }
  }
  hp.validate(src);
  return hp;
}

ModelHparams hparams_from_hf_config(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string file = fs::is_directory(path, ec) ? (fs::path(path) / "config.json").string() : path;
  if (!fs::exists(file, ec)) fail("{}: not found (expected an HF model directory with config.json)", file);
  return hparams_from_hf_config_json(read_file(file), file);
}

namespace {
// Per-layer keys may be a scalar or an array of block_count values (llama.cpp accepts both);
// samq needs them uniform.
int64_t layer_uniform(const GgufFile& f, const std::string& key, std::optional<int64_t> def) {
  const GgufValue* v = f.find(key);
  if (!v) {
    if (def) return *def;
    fail("{}: missing metadata key '{}'", f.path(), key);
  }
  try {
    if (!v->is_array()) return v->get_int();
    auto a = v->get_arr_int();
    if (a.empty()) fail("{}: key '{}' is an empty array", f.path(), key);
    for (int64_t x : a)
      if (x != a[0]) fail("{}: key '{}' varies per layer, which samq does not support", f.path(), key);
    return a[0];
  } catch (const Error& e) {
    fail("{}: {}", f.path(), e.what());
  }
}
}  // namespace

ModelHparams hparams_from_gguf(const GgufFile& f) {
  ModelHparams hp;
  const std::string arch = f.get_str("general.architecture");
  if (arch != "llama" && arch != "qwen2" && arch != "qwen3" && arch != "qwen3moe" && arch != "phi3")
    fail("{}: general.architecture '{}' is not supported (samq supports llama, qwen2, qwen3, qwen3moe, phi3)",
         f.path(), arch);
  hp.arch = arch;
  const std::string p = arch + ".";
  hp.n_ctx_train = layer_uniform(f, p + "context_length", std::nullopt);
  hp.n_embd = layer_uniform(f, p + "embedding_length", std::nullopt);
  hp.n_layer = layer_uniform(f, p + "block_count", std::nullopt);
  hp.n_ff = layer_uniform(f, p + "feed_forward_length", std::nullopt);
  hp.n_expert = layer_uniform(f, p + "expert_count", 0);
  if (hp.n_expert > 0 && arch != "qwen3moe" && arch != "llama")
    fail("{}: {}expert_count = {}: mixture-of-experts {} models are not supported (qwen3moe and llama/Mixtral only)",
         f.path(), p, hp.n_expert, arch);
  if (arch == "qwen3moe" || hp.n_expert > 0) {
    if (hp.n_expert <= 1) fail("{}: {}expert_count must be at least 2, got {}", f.path(), p, hp.n_expert);
    hp.n_expert_used = layer_uniform(f, p + "expert_used_count", std::nullopt);
    // Mixtral (llama): the experts' width is feed_forward_length (no expert_feed_forward_length).
    hp.n_ff_exp = arch == "llama" ? hp.n_ff : layer_uniform(f, p + "expert_feed_forward_length", std::nullopt);
    if (hp.n_expert_used <= 0 || hp.n_expert_used > hp.n_expert)
      fail("{}: {}expert_used_count = {} must be in 1..{}", f.path(), p, hp.n_expert_used, hp.n_expert);
    if (hp.n_ff_exp <= 0) fail("{}: {}expert_feed_forward_length must be positive", f.path(), p);
    // llama.cpp's qwen3moe and llama graphs always renormalise the top-k weights (no key says
    // otherwise).
    hp.expert_weights_norm = true;
  }
  hp.n_head = layer_uniform(f, p + "attention.head_count", std::nullopt);
  hp.n_head_kv = layer_uniform(f, p + "attention.head_count_kv", hp.n_head);
  if (hp.n_head <= 0) fail("{}: {}attention.head_count must be positive", f.path(), p);
  hp.head_dim = layer_uniform(f, p + "attention.key_length", hp.n_embd / hp.n_head);
  hp.rope_theta = f.get_f32(p + "rope.freq_base", 10000.0f);
  hp.rms_eps = f.get_f32(p + "attention.layer_norm_rms_epsilon");
  // llama.cpp's converter writes phi3.attention.sliding_window (0: none) and nothing for llama;
  // samq's converter writes llama.attention.sliding_window for Mistral checkpoints with a window.
  hp.n_swa = layer_uniform(f, p + "attention.sliding_window", 0);
  if (hp.n_swa < 0) fail("{}: {}attention.sliding_window must not be negative", f.path(), p);
  if (arch == "phi3") {
    hp.fused_qkv_gate_up = true;
    const int64_t rot = layer_uniform(f, p + "rope.dimension_count", hp.head_dim);
    if (rot != hp.head_dim)
      fail("{}: {}rope.dimension_count = {} != head dim {}: partial rotary is not supported", f.path(), p, rot,
           hp.head_dim);
    if (f.find_tensor("rope_factors_long.weight") || f.find_tensor("rope_factors_short.weight"))
      fail("{}: rope_factors_long/short (Phi-3 long-context RoPE) are not supported", f.path());
  }

  const std::string scaling = f.get_str(p + "rope.scaling.type", "none");
  const float factor = f.get_f32(p + "rope.scaling.factor", 0.0f);
  if (f.find_tensor("rope_freqs.weight")) {
    hp.rope_scaling = RopeScalingType::Llama3;  // factors are baked into rope_freqs.weight
    hp.rope_factor = 0.0f;                      // unknown: read rope_freqs.weight instead
    hp.rope_orig_ctx = 0;
  } else if (scaling == "linear" && factor != 0.0f && factor != 1.0f) {
    hp.rope_scaling = RopeScalingType::Linear;
    hp.rope_factor = factor;
  } else if (scaling != "none" && scaling != "linear") {
    fail("{}: {}rope.scaling.type '{}' is not supported (none, linear, llama3)", f.path(), p, scaling);
  }

  const GgufTensorInfo* emb = f.find_tensor("token_embd.weight");
  if (emb) hp.n_vocab = emb->ne[1];
  else if (const GgufValue* t = f.find("tokenizer.ggml.tokens")) hp.n_vocab = int64_t(t->size());
  else hp.n_vocab = layer_uniform(f, p + "vocab_size", std::nullopt);
  hp.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  hp.attn_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  hp.qk_norm = f.find_tensor("blk.0.attn_q_norm.weight") != nullptr;
  if (const GgufValue* b = f.find("tokenizer.ggml.bos_token_id")) hp.bos_id = int32_t(b->get_int());
  if (const GgufValue* e = f.find("tokenizer.ggml.eos_token_id")) hp.eos_id = int32_t(e->get_int());

  // Dominant weight type by element count over matrices.
  std::map<GgmlType, int64_t> by_type;
  for (const auto& t : f.tensors())
    if (t.n_dims >= 2) by_type[t.type] += t.n_elements();
  int64_t best = -1;
  for (const auto& [t, n] : by_type)
    if (n > best) { best = n; hp.source_dtype = std::string(ggml_type_name(t)); }

  if (hp.rope_scaling == RopeScalingType::Llama3) {
    // validate() would reject the unknown factors; check the rest.
    ModelHparams copy = hp;
    copy.rope_scaling = RopeScalingType::None;
    copy.validate(f.path());
  } else {
    hp.validate(f.path());
  }
  return hp;
}

}  // namespace samq
