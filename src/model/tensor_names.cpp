// HF -> GGUF tensor names, GGUF name parsing and the Llama q/k row permutation.
#include "model/tensor_names.h"

#include <charconv>
#include <cstring>
#include <span>
#include <utility>

#include "core/error.h"

namespace samq {
namespace {

struct NameMap {
  const char* hf;    // part after "model.layers.N." (or the whole name for globals)
  const char* gguf;  // kind
};

// Per-layer parts, without the trailing ".weight"/".bias".
constexpr NameMap kLayerMap[] = {
    {"input_layernorm", "attn_norm"},
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"self_attn.q_norm", "attn_q_norm"},
    {"self_attn.k_norm", "attn_k_norm"},
    {"post_attention_layernorm", "ffn_norm"},
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
    {"mlp.gate", "ffn_gate_inp"},
    {"block_sparse_moe.gate", "ffn_gate_inp"},  // Mixtral
    {"self_attn.qkv_proj", "attn_qkv"},          // Phi-3: q, k, v rows fused
    {"mlp.gate_up_proj", "ffn_up"},              // Phi-3: gate then up rows (2 * n_ff)
};

constexpr NameMap kExpertMap[] = {
    {"gate_proj", "ffn_gate_exps"},
    {"up_proj", "ffn_up_exps"},
    {"down_proj", "ffn_down_exps"},
};
// Mixtral's names (model.layers.N.block_sparse_moe.experts.E.wK): w1 gate, w2 down, w3 up.
constexpr NameMap kMixtralExpertMap[] = {
    {"w1", "ffn_gate_exps"},
    {"w3", "ffn_up_exps"},
    {"w2", "ffn_down_exps"},
};

constexpr NameMap kGlobalMap[] = {
    {"model.embed_tokens", "token_embd"},
    {"model.norm", "output_norm"},
    {"lm_head", "output"},
};

bool split_suffix(std::string_view name, std::string_view& stem, std::string_view& suffix) {
  const size_t dot = name.rfind('.');
  if (dot == std::string_view::npos) return false;
  stem = name.substr(0, dot);
  suffix = name.substr(dot + 1);
  return suffix == "weight" || suffix == "bias";
}

}  // namespace

std::optional<HfExpertPart> parse_hf_expert_name(std::string_view hf) {
  constexpr std::string_view prefix = "model.layers.", mid = ".mlp.experts.", mid_mixtral = ".block_sparse_moe.experts.",
                             tail = ".weight";
  if (!hf.starts_with(prefix) || !hf.ends_with(tail)) return std::nullopt;
  std::string_view rest = hf.substr(prefix.size(), hf.size() - prefix.size() - tail.size());
  HfExpertPart r;
  auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), r.layer);
  if (ec != std::errc() || r.layer < 0) return std::nullopt;
  rest = rest.substr(size_t(p - rest.data()));
  const bool mixtral = rest.starts_with(mid_mixtral);
  if (!mixtral && !rest.starts_with(mid)) return std::nullopt;
  rest = rest.substr(mixtral ? mid_mixtral.size() : mid.size());
  auto [q, ec2] = std::from_chars(rest.data(), rest.data() + rest.size(), r.expert);
  if (ec2 != std::errc() || r.expert < 0 || q == rest.data() + rest.size() || *q != '.') return std::nullopt;
  rest = rest.substr(size_t(q - rest.data()) + 1);
  for (const auto& m : mixtral ? std::span<const NameMap>(kMixtralExpertMap) : std::span<const NameMap>(kExpertMap))
    if (rest == m.hf) {
      r.gguf = "blk." + std::to_string(r.layer) + "." + m.gguf + ".weight";
      return r;
    }
  fail("tensor '{}': unknown expert tensor '{}' (expected {})", hf, rest,
       mixtral ? "w1, w2, w3" : "gate_proj, up_proj, down_proj");
}

std::optional<std::string> hf_to_gguf_name(std::string_view hf) {
  // Buffers llama.cpp's converter skips.
  if (hf.find("rotary_emb.inv_freq") != std::string_view::npos) return std::nullopt;
  if (auto e = parse_hf_expert_name(hf)) return e->gguf;
  std::string_view stem, suffix;
  if (!split_suffix(hf, stem, suffix)) fail("tensor '{}': no .weight/.bias suffix; not a known HF tensor name", hf);
  for (const auto& m : kGlobalMap)
    if (stem == m.hf) return std::string(m.gguf) + "." + std::string(suffix);
  constexpr std::string_view prefix = "model.layers.";
  if (stem.substr(0, prefix.size()) == prefix) {
    std::string_view rest = stem.substr(prefix.size());
    int layer = -1;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), layer);
    if (ec != std::errc() || p == rest.data() + rest.size() || *p != '.' || layer < 0)
      fail("tensor '{}': bad layer index", hf);
    std::string_view part = rest.substr(size_t(p - rest.data()) + 1);
    for (const auto& m : kLayerMap)
      if (part == m.hf) return "blk." + std::to_string(layer) + "." + m.gguf + "." + std::string(suffix);
    fail("tensor '{}': unknown per-layer tensor '{}' (not supported yet)", hf, part);
  }
  fail("tensor '{}': unknown HF tensor name (not supported yet)", hf);
}

GgufNameParts parse_gguf_name(std::string_view name) {
  GgufNameParts r;
  std::string_view stem = name, suffix;
  if (split_suffix(name, stem, suffix)) r.suffix = std::string(suffix);
  else stem = name;
  constexpr std::string_view blk = "blk.";
  if (stem.substr(0, blk.size()) == blk) {
    std::string_view rest = stem.substr(blk.size());
    int layer = -1;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), layer);
    if (ec == std::errc() && p < rest.data() + rest.size() && *p == '.') {
      r.layer = layer;
      r.kind = std::string(rest.substr(size_t(p - rest.data()) + 1));
      return r;
    }
  }
  r.kind = std::string(stem);
  return r;
}

bool keeps_f32(std::string_view name, int n_dims) {
  if (n_dims <= 1) return true;
  const auto parts = parse_gguf_name(name);
  // ffn_gate_inp: the MoE router (the converter's always-F32 list; llama-quantize skips it).
  return parts.kind == "rope_freqs" || parts.kind.ends_with("_norm") || parts.kind == "ffn_gate_inp";
}

namespace {
// dir = +1: HF -> GGUF; -1: GGUF -> HF.
void permute_impl(const void* in, void* out, int64_t rows, size_t row_bytes, int n_head, bool to_gguf) {
  if (n_head <= 0 || rows % n_head != 0 || (rows / n_head) % 2 != 0)
    fail("permute_qk_rows: {} rows cannot be split into {} heads of an even size", rows, n_head);
  const int64_t hd = rows / n_head, half = hd / 2;
  const auto* src = static_cast<const uint8_t*>(in);
  auto* dst = static_cast<uint8_t*>(out);
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < half; ++j) {
        const int64_t hf_row = h * hd + i * half + j;
        const int64_t gg_row = h * hd + 2 * j + i;
        const int64_t from = to_gguf ? hf_row : gg_row;
        const int64_t to = to_gguf ? gg_row : hf_row;
        std::memcpy(dst + size_t(to) * row_bytes, src + size_t(from) * row_bytes, row_bytes);
      }
}
}  // namespace

void permute_qk_rows(const void* in, void* out, int64_t rows, size_t row_bytes, int n_head) {
  permute_impl(in, out, rows, row_bytes, n_head, true);
}
void unpermute_qk_rows(const void* in, void* out, int64_t rows, size_t row_bytes, int n_head) {
  permute_impl(in, out, rows, row_bytes, n_head, false);
}

}  // namespace samq
