#include "plan/presets.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "core/error.h"
#include "quant/llama_ftype.h"

namespace samq::plan {
namespace {

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower((unsigned char)x) == std::tolower((unsigned char)y);
         });
}

// use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2, integer division (§4.2).
bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// llama_model_loader order (§4.1): tensors without "blk.N." first, sorted by name; then per
// layer ascending, names sorted within a layer. The mixture's running counters follow it.
std::vector<size_t> loader_order(const Sensitivity& s) {
  std::vector<size_t> idx(s.tensors.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    const auto& ta = s.tensors[a];
    const auto& tb = s.tensors[b];
    const int la = layer_of(ta.name), lb = layer_of(tb.name);
    if (la != lb) return la < lb;  // -1 (non-block tensors) first
    return ta.name < tb.name;
  });
  return idx;
}

enum class Cat { Other, Output, TokenEmbd, AttnV, AttnK, AttnQ, AttnOutput, FfnUp, FfnGate, FfnDown };

Cat categorize(const std::string& name) {
  // Substring tests in llama-quant.cpp's order (§4.1 step 2).
  if (name == "output.weight") return Cat::Output;
  if (name == "token_embd.weight") return Cat::TokenEmbd;
  if (name.find("attn_qkv.weight") != std::string::npos || name.find("attn_kv_b.weight") != std::string::npos ||
      name.find("attn_v.weight") != std::string::npos)
    return Cat::AttnV;
  if (name.find("attn_k.weight") != std::string::npos) return Cat::AttnK;
  if (name.find("attn_q.weight") != std::string::npos) return Cat::AttnQ;
  if (name.find("attn_output.weight") != std::string::npos) return Cat::AttnOutput;
  if (name.find("ffn_up") != std::string::npos) return Cat::FfnUp;
  if (name.find("ffn_gate") != std::string::npos) return Cat::FfnGate;
  if (name.find("ffn_down") != std::string::npos) return Cat::FfnDown;
  return Cat::Other;
}

const std::vector<PresetInfo> kPresets = {
    {"Q2_K", 10, GgmlType::Q2_K},   {"Q3_K_S", 11, GgmlType::Q3_K}, {"Q3_K_M", 12, GgmlType::Q3_K},
    {"Q3_K_L", 13, GgmlType::Q3_K}, {"Q4_K_S", 14, GgmlType::Q4_K}, {"Q4_K_M", 15, GgmlType::Q4_K},
    {"Q5_K_S", 16, GgmlType::Q5_K}, {"Q5_K_M", 17, GgmlType::Q5_K}, {"Q6_K", 18, GgmlType::Q6_K},
    {"Q8_0", 7, GgmlType::Q8_0},
};
}  // namespace

const std::vector<PresetInfo>& presets() { return kPresets; }

const PresetInfo* find_preset(std::string_view name) {
  if (iequal(name, "Q3_K")) name = "Q3_K_M";
  if (iequal(name, "Q4_K")) name = "Q4_K_M";
  if (iequal(name, "Q5_K")) name = "Q5_K_M";
  for (const auto& p : kPresets)
    if (iequal(p.name, name)) return &p;
  return nullptr;
}

GgmlType shape_fallback(GgmlType t, int64_t cols) {
  const auto& info = ggml_type_info(t);
  if (cols % info.block_size == 0) return t;
  GgmlType f;
  switch (t) {
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::TQ1_0: case GgmlType::TQ2_0: f = GgmlType::Q4_0; break;
    case GgmlType::Q4_K: f = GgmlType::Q5_0; break;
    case GgmlType::Q5_K: f = GgmlType::Q5_1; break;
    case GgmlType::Q6_K: f = GgmlType::Q8_0; break;
    case GgmlType::IQ1_S: case GgmlType::IQ1_M: case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS:
    case GgmlType::IQ2_S: case GgmlType::IQ3_XXS: case GgmlType::IQ3_S: case GgmlType::IQ4_XS:
      f = GgmlType::IQ4_NL; break;
    default:
      fail("no shape fallback for {} with rows of {} elements", info.name, cols);
  }
  if (cols % ggml_type_info(f).block_size != 0) f = GgmlType::F16;
  return f;
}

std::vector<GgmlType> preset_types(const PresetInfo& p, const Sensitivity& s) {
  const int n = int(s.tensors.size());
  std::vector<GgmlType> out(n, p.base);
  bool tied = true;
  int n_attention_wv = 0, n_layer = 0;
  int64_t q_rows = 0, k_rows = 0;
  bool has_exps = false;
  for (const auto& t : s.tensors) {
    has_exps |= t.name.find("_exps") != std::string::npos;
    if (t.name == "output.weight") tied = false;
    const Cat c = categorize(t.name);
    if (c == Cat::AttnV) ++n_attention_wv;
    if (c == Cat::AttnQ && q_rows == 0) q_rows = t.rows;
    if (c == Cat::AttnK && k_rows == 0) k_rows = t.rows;
    n_layer = std::max(n_layer, t.layer + 1);
  }
  // n_gqa = n_head / n_head_kv; with equal head dims for q and k it is the row ratio.
  int n_gqa = 1;
  if (s.model.n_head > 0 && s.model.n_head_kv > 0) n_gqa = s.model.n_head / s.model.n_head_kv;
  else if (q_rows > 0 && k_rows > 0) n_gqa = int(q_rows / k_rows);
  // hparams.n_expert (§4.3): the 8-expert rules key on it, and with more than one expert the FFN
  // rules take the layer from the name instead of the running counter.
  const int n_expert = s.model.n_expert;
  if (has_exps && n_expert <= 1)
    fail("{}: expert tensors but no model.n_expert: re-run samq analyze to record it", s.path.empty() ? "sensitivity" : s.path);
  const bool moe8 = n_expert == 8;
  const std::string& arch = s.model.architecture;
  const bool is_70b = n_layer == 80 && ((arch == "llama" && n_gqa > 1) || arch == "qwen2");
  const std::string_view f = p.name;
  const GgmlType Q3 = GgmlType::Q3_K, Q4 = GgmlType::Q4_K, Q5 = GgmlType::Q5_K, Q6 = GgmlType::Q6_K;

  int i_wv = 0, i_down = 0;
  for (size_t k : loader_order(s)) {
    const auto& t = s.tensors[k];
    if (!t.quantizable) {
      out[k] = t.candidates.empty() ? GgmlType::F32 : t.candidates.front().type;
      continue;
    }
    const Cat c = categorize(t.name);
    GgmlType ty = p.base;
    bool fallback = true;
    if (p.base == GgmlType::Q8_0) {
      // Legacy Q8_0 file: every quantizable tensor Q8_0 (the output rule keeps Q8_0 too).
      ty = GgmlType::Q8_0;
    } else if (c == Cat::Output || (c == Cat::TokenEmbd && tied)) {
      ty = t.cols % ggml_type_info(p.base).block_size != 0 ? GgmlType::Q8_0 : Q6;
      fallback = false;  // the output rule handles the shape itself
    } else if (c == Cat::AttnV) {
      const int i = i_wv, nn = n_attention_wv;
      if (f == "Q2_K") ty = n_gqa >= 4 ? Q4 : Q3;
      else if (f == "Q3_K_S") ty = Q3;
      else if (f == "Q3_K_M") ty = i < 2 ? Q5 : Q4;
      else if (f == "Q3_K_L") ty = Q5;
      else if (f == "Q4_K_S") ty = i < 4 ? Q5 : Q4;
      else if (f == "Q4_K_M") ty = use_more_bits(i, nn) ? Q6 : Q4;
      else if (f == "Q5_K_S") ty = Q5;
      else if (f == "Q5_K_M") ty = use_more_bits(i, nn) ? Q6 : Q5;
      else if (f == "Q6_K") ty = Q6;
      if (is_70b && (ty == Q3 || ty == Q4)) ty = Q5;
      if (moe8) ty = GgmlType::Q8_0;  // "trades just ~128MB" for the 8-expert models
      ++i_wv;
    } else if (c == Cat::AttnK && moe8) {
      ty = GgmlType::Q8_0;
    } else if (c == Cat::FfnDown) {
      const int i = n_expert > 1 ? t.layer : i_down, nn = n_layer;
      if (f == "Q2_K" || f == "Q3_K_S") ty = Q3;
      else if (f == "Q3_K_M") ty = i < nn / 16 ? Q5 : Q4;
      else if (f == "Q3_K_L") ty = Q5;
      else if (f == "Q4_K_S") ty = i < nn / 8 ? Q5 : p.base;
      else if (f == "Q4_K_M") ty = use_more_bits(i, nn) ? Q6 : p.base;
      else if (f == "Q5_K_S") ty = Q5;
      else if (f == "Q5_K_M") ty = use_more_bits(i, nn) ? Q6 : Q5;
      else if (f == "Q6_K") ty = Q6;
      ++i_down;
    } else if (c == Cat::AttnOutput && moe8) {
      // 8 experts: Q5_K for these file types, the default type for the others (Q3_K_L too).
      if (f == "Q2_K" || f == "Q3_K_S" || f == "Q3_K_M" || f == "Q4_K_S" || f == "Q4_K_M") ty = Q5;
    } else if (c == Cat::AttnOutput) {
      if (f == "Q2_K" || f == "Q3_K_S") ty = Q3;
      else if (f == "Q3_K_M" || f == "Q4_K_S" || f == "Q4_K_M") ty = Q4;
      else if (f == "Q3_K_L" || f == "Q5_K_S" || f == "Q5_K_M") ty = Q5;
      else if (f == "Q6_K") ty = Q6;
    }
    out[k] = fallback ? shape_fallback(ty, t.cols) : ty;
  }
  return out;
}

int guess_ftype(const std::vector<GgmlType>& types, const std::vector<int64_t>& bytes) {
  std::map<int, int64_t> by_type;
  for (size_t i = 0; i < types.size(); ++i)
    if (types[i] != GgmlType::F32) by_type[int(types[i])] += bytes[i];
  int best = -1;
  int64_t best_b = -1;
  for (auto& [t, b] : by_type)
    if (b > best_b) best = t, best_b = b;
  if (best < 0) return 0;  // no quantized tensor
  return int(llama_ftype_for(GgmlType(best)).value_or(0));
}

}  // namespace samq::plan
