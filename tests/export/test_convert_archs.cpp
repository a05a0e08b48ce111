// samq convert of the issue-16 fixtures (tests/data/archs, made by scripts/make_arch_fixtures.py
// with transformers): the GGUF layout llama.cpp's converter gives these architectures (facts
// from its convert_hf_to_gguf.py / gguf-py: Mistral and Mixtral are arch "llama" with q/k rows
// permuted; Mixtral's experts w1, w2, w3 stacked into ffn_{gate,down,up}_exps in that order,
// the router ffn_gate_inp F32, expert_count / expert_used_count; Phi-3 keeps qkv_proj and
// gate_up_proj fused as attn_qkv / ffn_up and writes phi3.attention.sliding_window, 0 for none),
// each tensor's bytes checked against the safetensors file directly, and the converted file run
// by samq's engine against transformers' float32 logits (the same 1e-3 bound as the HF
// directory in tests/model/test_forward_golden.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/test_env.h"
#include "core/atomic_file.h"
#include "export/convert.h"
#include "export/source_model.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "model/forward.h"
#include "model/model.h"

using namespace samq;

namespace {

std::string fixture(const std::string& name) { return test::source_path("tests/data/archs/" + name); }

std::string convert_bf16(const std::string& name) {
  const std::string out = test::temp_dir() + "/" + name + "-bf16.gguf";
  const auto src = open_source_model(fixture(name));
  ConvertOptions opt;
  opt.type = GgmlType::BF16;
  convert_to_gguf(*src, out, opt);
  return out;
}

const StTensorView& st_tensor(const SafetensorsModel& st, const std::string& name) {
  for (const auto& t : st.tensors())
    if (t.name == name) return t;
  throw std::runtime_error("no tensor " + name);
}

// The converted file through samq's engine against transformers' logits.
float gguf_logit_error(const std::string& gguf, const std::string& name) {
  const auto j = nlohmann::json::parse(read_file(fixture(name) + "/reference-logits.json"));
  const auto tokens = j["tokens"].get<std::vector<int32_t>>();
  const std::string raw = read_file(fixture(name) + "/reference-logits.f32");
  std::vector<float> want(raw.size() / 4);
  std::memcpy(want.data(), raw.data(), raw.size());
  auto m = Model::load(gguf);
  m->ggml_numerics = false;
  const auto got = forward_logits(*m, cpu_ops(), tokens);
  EXPECT_EQ(got.size(), want.size());
  float d = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) d = std::max(d, std::fabs(got[i] - want[i]));
  std::printf("%s: converted bf16 GGUF, max |logit - HF| = %.3g\n", name.c_str(), double(d));
  return d;
}

// Row r of a bf16 matrix (rows of `cols` values) as raw bytes.
std::string bf16_row(const uint8_t* data, int64_t cols, int64_t r) {
  return std::string(reinterpret_cast<const char*>(data + r * cols * 2), size_t(cols * 2));
}

}  // namespace

TEST(ConvertArchs, MistralIsLlamaWithWindow) {
  const std::string out = convert_bf16("mistral");
  const GgufFile f = GgufFile::open(out);
  EXPECT_EQ(f.get_str("general.architecture"), "llama");
  EXPECT_EQ(f.get_u32("llama.attention.sliding_window"), 16u);  // config.json sliding_window
  EXPECT_EQ(f.find("llama.expert_count"), nullptr);
  // q rows permuted as llama.cpp's LlamaModel.permute: HF row h*hd + i*hd/2 + j -> h*hd + 2j + i.
  const auto st = SafetensorsModel::open(fixture("mistral"));
  const StTensorView& q = st_tensor(st, "model.layers.1.self_attn.q_proj.weight");
  const GgufTensorInfo* gq = f.find_tensor("blk.1.attn_q.weight");
  ASSERT_NE(gq, nullptr);
  ASSERT_EQ(gq->type, GgmlType::BF16);
  const int64_t hd = 16, cols = 64;
  for (int64_t h = 0; h < 4; ++h)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < hd / 2; ++j)
        ASSERT_EQ(bf16_row(gq->data, cols, h * hd + 2 * j + i), bf16_row(q.data, cols, h * hd + i * hd / 2 + j));
  EXPECT_LE(gguf_logit_error(out, "mistral"), 1e-3f);
}

TEST(ConvertArchs, MixtralExpertsStackedAsLlamaCpp) {
  const std::string out = convert_bf16("mixtral");
  const GgufFile f = GgufFile::open(out);
  EXPECT_EQ(f.get_str("general.architecture"), "llama");
  EXPECT_EQ(f.get_u32("llama.expert_count"), 4u);
  EXPECT_EQ(f.get_u32("llama.expert_used_count"), 2u);
  EXPECT_EQ(f.get_u32("llama.feed_forward_length"), 128u);
  EXPECT_EQ(f.find("llama.expert_feed_forward_length"), nullptr);  // llama.cpp's llama reads n_ff
  EXPECT_EQ(f.find("llama.attention.sliding_window"), nullptr);    // sliding_window null
  // The converter's order: gate (w1), down (w2), up (w3), one after the other.
  std::vector<std::string> names;
  for (const auto& t : f.tensors()) names.push_back(t.name);
  const auto at = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
  EXPECT_EQ(at("blk.0.ffn_down_exps.weight"), at("blk.0.ffn_gate_exps.weight") + 1);
  EXPECT_EQ(at("blk.0.ffn_up_exps.weight"), at("blk.0.ffn_gate_exps.weight") + 2);
  const GgufTensorInfo* router = f.find_tensor("blk.1.ffn_gate_inp.weight");
  ASSERT_NE(router, nullptr);
  EXPECT_EQ(router->type, GgmlType::F32);
  EXPECT_EQ(router->ne[0], 64);
  EXPECT_EQ(router->ne[1], 4);
  const auto st = SafetensorsModel::open(fixture("mixtral"));
  for (const auto& [w, kind, rows, cols] : {std::tuple{"w1", "ffn_gate_exps", 128, 64}, std::tuple{"w2", "ffn_down_exps", 64, 128},
                                            std::tuple{"w3", "ffn_up_exps", 128, 64}}) {
    const GgufTensorInfo* t = f.find_tensor(std::string("blk.1.") + kind + ".weight");
    ASSERT_NE(t, nullptr) << kind;
    EXPECT_EQ(t->n_dims, 3u);
    EXPECT_EQ(t->ne[0], cols);
    EXPECT_EQ(t->ne[1], rows);
    EXPECT_EQ(t->ne[2], 4);
    for (int e = 0; e < 4; ++e) {
      const StTensorView& v = st_tensor(st, "model.layers.1.block_sparse_moe.experts." + std::to_string(e) + "." + w + ".weight");
      ASSERT_EQ(v.nbytes, uint64_t(rows * cols * 2));
      EXPECT_EQ(std::memcmp(t->data + e * v.nbytes, v.data, v.nbytes), 0) << kind << " expert " << e;
    }
  }
  EXPECT_LE(gguf_logit_error(out, "mixtral"), 1e-3f);
}

TEST(ConvertArchs, Phi3KeepsFusedTensors) {
  const std::string out = convert_bf16("phi3");
  const GgufFile f = GgufFile::open(out);
  EXPECT_EQ(f.get_str("general.architecture"), "phi3");
  EXPECT_EQ(f.get_u32("phi3.attention.sliding_window"), 0u);  // sliding_window null -> 0
  EXPECT_EQ(f.get_u32("phi3.rope.scaling.original_context_length"), 1024u);
  EXPECT_EQ(f.get_u32("phi3.rope.dimension_count"), 16u);
  EXPECT_EQ(f.get_u32("phi3.feed_forward_length"), 192u);
  EXPECT_EQ(f.find_tensor("blk.0.attn_q.weight"), nullptr);
  EXPECT_EQ(f.find_tensor("blk.0.ffn_gate.weight"), nullptr);
  // Fused tensors as stored by HF, rows unpermuted (phi3 is a NeoX-RoPE architecture).
  const auto st = SafetensorsModel::open(fixture("phi3"));
  for (const auto& [hf, gguf, rows] : {std::tuple{"self_attn.qkv_proj", "attn_qkv", 128}, std::tuple{"mlp.gate_up_proj", "ffn_up", 384}}) {
    const GgufTensorInfo* t = f.find_tensor(std::string("blk.1.") + gguf + ".weight");
    ASSERT_NE(t, nullptr) << gguf;
    EXPECT_EQ(t->ne[0], 64);
    EXPECT_EQ(t->ne[1], rows);
    const StTensorView& v = st_tensor(st, std::string("model.layers.1.") + hf + ".weight");
    ASSERT_EQ(t->nbytes, v.nbytes);
    EXPECT_EQ(std::memcmp(t->data, v.data, v.nbytes), 0) << gguf;
  }
  EXPECT_LE(gguf_logit_error(out, "phi3"), 1e-3f);
}
