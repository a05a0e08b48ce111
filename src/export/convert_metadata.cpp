// llama.cpp converter metadata and generated tensors (see convert_metadata.h).
#include "export/convert_metadata.h"

#include <cmath>
#include <filesystem>
#include <numbers>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "model/tokenizer.h"

namespace samq {

namespace {

using nlohmann::json;

json read_config(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  try {
    return json::parse(read_file(path));
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
}

// rope_parameters (transformers >= 5) or rope_scaling (older), or an empty object.
json rope_params(const json& cfg) {
  for (const char* k : {"rope_parameters", "rope_scaling"}) {
    auto it = cfg.find(k);
    if (it != cfg.end() && it->is_object()) {
      // Per-layer-type form {"full_attention": {...}, ...}.
      if (it->contains("full_attention") && (*it)["full_attention"].is_object()) return (*it)["full_attention"];
      return *it;
    }
  }
  return json::object();
}

std::string rope_type(const json& rp) {
  std::string t = rp.value("rope_type", rp.value("type", std::string()));
  for (auto& c : t) c = char(std::tolower(uint8_t(c)));
  return t;
}

}  // namespace

std::string gguf_size_label(int64_t n) {
  double scaled;
  const char* suffix;
  if (double(n) > 1e12) { scaled = double(n) * 1e-12; suffix = "T"; }
  else if (double(n) > 1e9) { scaled = double(n) * 1e-9; suffix = "B"; }
  else if (double(n) > 1e6) { scaled = double(n) * 1e-6; suffix = "M"; }
  else { scaled = double(n) * 1e-3; suffix = "K"; }
  // Digits of the rounded value (round half to even, as Python's round), leading zeros dropped.
  const auto r = int64_t(std::nearbyint(scaled));
  const int digits = r == 0 ? 0 : int(std::to_string(r).size());
  const int fix = std::max(2 - digits, 0);
  return fmt::format("{:.{}f}{}", scaled, fix, suffix);
}

std::vector<GgufValue> hf_converter_metadata(const std::string& dir, const ModelHparams& hp, const Tokenizer& tok,
                                             int64_t n_params, uint32_t file_type) {
  const json cfg = read_config(dir);
  const json rp = rope_params(cfg);
  const std::string a = hp.arch;
  std::vector<GgufValue> kv;
  auto put = [&](std::string key, GgufValue v) {
    v.set_key(std::move(key));
    kv.push_back(std::move(v));
  };
  auto u32 = [](int64_t v) { return GgufValue::u32(uint32_t(v)); };

  put("general.architecture", GgufValue::str(a));
  put("general.type", GgufValue::str("model"));
  put("general.size_label", GgufValue::str(hp.is_moe() ? fmt::format("{}x{}", hp.n_expert, gguf_size_label(n_params))
                                                        : gguf_size_label(n_params)));

  if (a == "phi3") {
    // Phi3MiniModel.set_gguf_parameters (it does not call the base class's): its own key order,
    // rope.scaling.original_context_length, and sliding_window written as 0 when config.json has
    // none (how llama.cpp tells Phi-4 from Phi-3).
    const json* orig = rp.contains("original_max_position_embeddings") ? &rp["original_max_position_embeddings"]
                       : cfg.contains("original_max_position_embeddings") ? &cfg["original_max_position_embeddings"]
                                                                           : nullptr;
    if (!orig || !orig->is_number_integer())
      fail("{}/config.json: Phi3ForCausalLM needs an integer 'original_max_position_embeddings'", dir);
    put(a + ".context_length", u32(hp.n_ctx_train));
    put(a + ".rope.scaling.original_context_length", u32(orig->get<int64_t>()));
    put(a + ".embedding_length", u32(hp.n_embd));
    put(a + ".feed_forward_length", u32(hp.n_ff));
    put(a + ".block_count", u32(hp.n_layer));
    put(a + ".attention.head_count", u32(hp.n_head));
    put(a + ".attention.head_count_kv", u32(hp.n_head_kv));
    put(a + ".attention.layer_norm_rms_epsilon", GgufValue::f32(hp.rms_eps));
    put(a + ".rope.dimension_count", u32(hp.head_dim));
    put(a + ".rope.freq_base", GgufValue::f32(hp.rope_theta));
    put("general.file_type", GgufValue::u32(file_type));
    put(a + ".attention.sliding_window", u32(hp.n_swa));
    put("general.quantization_version", GgufValue::u32(2));
  } else {
  put(a + ".block_count", u32(hp.n_layer));
  put(a + ".context_length", u32(hp.n_ctx_train));
  put(a + ".embedding_length", u32(hp.n_embd));
  put(a + ".feed_forward_length", u32(hp.n_ff));
  put(a + ".attention.head_count", u32(hp.n_head));
  if (cfg.contains("num_key_value_heads")) put(a + ".attention.head_count_kv", u32(hp.n_head_kv));
  if (cfg.contains("rope_theta") || rp.contains("rope_theta")) put(a + ".rope.freq_base", GgufValue::f32(hp.rope_theta));
  if (cfg.contains("rms_norm_eps")) put(a + ".attention.layer_norm_rms_epsilon", GgufValue::f32(hp.rms_eps));
  if (hp.is_moe()) {
    put(a + ".expert_count", u32(hp.n_expert));
    put(a + ".expert_used_count", u32(hp.n_expert_used));
  }
  if (cfg.contains("head_dim") && !cfg["head_dim"].is_null()) {
    put(a + ".attention.key_length", u32(hp.head_dim));
    put(a + ".attention.value_length", u32(hp.head_dim));
  }
  put("general.file_type", GgufValue::u32(file_type));
  if (a == "llama") {
    put(a + ".vocab_size", u32(hp.n_vocab));
    put(a + ".rope.dimension_count", u32(hp.head_dim));
    // Not written by llama.cpp's converter (its llama graph has no sliding window, so llama.cpp
    // attends to the whole context); samq's engine reads it to run Mistral's window as HF does.
    if (hp.n_swa > 0) put(a + ".attention.sliding_window", u32(hp.n_swa));
    if (rope_type(rp) == "linear" && rp.contains("factor")) {
      put(a + ".rope.scaling.type", GgufValue::str("linear"));
      put(a + ".rope.scaling.factor", GgufValue::f32(rp["factor"].get<float>()));
    }
  } else if (rope_type(rp) == "linear" && rp.contains("factor")) {
    put(a + ".rope.scaling.type", GgufValue::str("linear"));
    put(a + ".rope.scaling.factor", GgufValue::f32(rp["factor"].get<float>()));
  }
  if (a == "qwen3moe") put(a + ".expert_feed_forward_length", u32(hp.n_ff_exp));
  put("general.quantization_version", GgufValue::u32(2));
  }

  const TokenizerVocab& v = tok.vocab();
  if (v.model == "llama") {
    // SentencePiece (_set_vocab_sentencepiece / _set_vocab_llama_hf): add_space_prefix first (the
    // llama converter writes it before the vocab; samq always writes it, so the file says what
    // the tokenizer.json does), then model, pre "default", tokens, scores, token_type, no merges.
    if (v.add_space_prefix) put("tokenizer.ggml.add_space_prefix", GgufValue::boolean(*v.add_space_prefix));
    put("tokenizer.ggml.model", GgufValue::str(v.model));
    put("tokenizer.ggml.pre", GgufValue::str(v.pre.empty() ? "default" : v.pre));
    put("tokenizer.ggml.tokens", GgufValue::arr_str(v.tokens));
    put("tokenizer.ggml.scores", GgufValue::arr_f32(v.scores));
    put("tokenizer.ggml.token_type", GgufValue::arr_i32(v.token_types));
  } else {
    put("tokenizer.ggml.model", GgufValue::str(v.model));
    put("tokenizer.ggml.pre", GgufValue::str(v.pre));
    put("tokenizer.ggml.tokens", GgufValue::arr_str(v.tokens));
    put("tokenizer.ggml.token_type", GgufValue::arr_i32(v.token_types));
    put("tokenizer.ggml.merges", GgufValue::arr_str(v.merges));
  }
  if (v.bos_id >= 0) put("tokenizer.ggml.bos_token_id", u32(v.bos_id));
  if (v.eos_id >= 0) put("tokenizer.ggml.eos_token_id", u32(v.eos_id));
  if (v.unk_id >= 0) put("tokenizer.ggml.unknown_token_id", u32(v.unk_id));
  if (v.pad_id >= 0) put("tokenizer.ggml.padding_token_id", u32(v.pad_id));
  if (v.add_bos) put("tokenizer.ggml.add_bos_token", GgufValue::boolean(*v.add_bos));
  if (v.add_eos) put("tokenizer.ggml.add_eos_token", GgufValue::boolean(*v.add_eos));
  if (v.chat_template) put("tokenizer.chat_template", GgufValue::str(*v.chat_template));
  return kv;
}

std::vector<float> llama3_rope_factors(const std::string& dir, const ModelHparams& hp) {
  const json cfg = read_config(dir);
  const json rp = rope_params(cfg);
  if (rope_type(rp) != "llama3") fail("{}/config.json: RoPE scaling is not of type llama3", dir);
  const float base = rp.value("rope_theta", cfg.value("rope_theta", 10000.0f));
  const int64_t dim = hp.head_dim;
  const float factor = rp.value("factor", 8.0f);
  const float low = rp.value("low_freq_factor", 1.0f);
  const float high = rp.value("high_freq_factor", 4.0f);
  const double old_ctx = rp.value("original_max_position_embeddings",
                                  cfg.value("original_max_position_embeddings", 8192.0));
  const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
  std::vector<float> out;
  for (int64_t i = 0; i < dim; i += 2) {
    // float32 as torch computes 1 / base ** (arange(0, dim, 2) / dim); torch divides the Python
    // double 2*pi by the float32 frequency in double precision and rounds to float32. Known
    // difference: torch's SLEEF powf is not correctly rounded; for llama3-ropescaled
    // (theta 5e5, head_dim 64) it returns 1 ulp more at i = 16, so element 8 differs by a few
    // ulps from llama.cpp's file (std::pow is used here).
    const float freq = 1.0f / std::pow(base, float(i) / float(dim));
    const float wavelen = float(2.0 * std::numbers::pi / double(freq));
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(factor);
    } else {
      const float smooth = (float(old_ctx) / wavelen - low) / (high - low);
      out.push_back(1.0f / ((1.0f - smooth) / factor + smooth));
    }
  }
  return out;
}

}  // namespace samq
