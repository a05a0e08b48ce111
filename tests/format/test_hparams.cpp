// ModelHparams from config.json (every fixture in ../shared must parse) checked against the
// values llama.cpp's converter wrote for the same checkpoints (the manifests), and from the
// llama.cpp-written GGUF anchors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/error_text.h"
#include "common/test_env.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "format/gguf.h"
#include "format/hparams.h"

using namespace samq;
using json = nlohmann::json;

namespace {

// Checks the hparams against llama.cpp's converter metadata (<arch>.* keys) and tensors.
void expect_matches_manifest(const ModelHparams& hp, const std::string& manifest_rel) {
  const json m = json::parse(read_file(samq::test::shared_path(manifest_rel)));
  const json& md = m["metadata"];
  const std::string a = md["general.architecture"]["value"];
  EXPECT_EQ(hp.arch, a);
  auto u = [&](const std::string& k) { return md[a + "." + k]["value"].get<int64_t>(); };
  EXPECT_EQ(hp.n_ctx_train, u("context_length"));
  EXPECT_EQ(hp.n_embd, u("embedding_length"));
  EXPECT_EQ(hp.n_layer, u("block_count"));
  EXPECT_EQ(hp.n_ff, u("feed_forward_length"));
  EXPECT_EQ(hp.n_head, u("attention.head_count"));
  EXPECT_EQ(hp.n_head_kv, u("attention.head_count_kv"));
  if (md.contains(a + ".attention.key_length")) EXPECT_EQ(hp.head_dim, u("attention.key_length"));
  else EXPECT_EQ(hp.head_dim, hp.n_embd / hp.n_head);
  // GGUF stores float32: the converter's value is float(config value).
  EXPECT_EQ(hp.rope_theta, md[a + ".rope.freq_base"]["value"].get<float>());
  EXPECT_EQ(hp.rms_eps, md[a + ".attention.layer_norm_rms_epsilon"]["value"].get<float>());
  EXPECT_EQ(hp.bos_id, md["tokenizer.ggml.bos_token_id"]["value"].get<int>());
  EXPECT_EQ(hp.eos_id, md["tokenizer.ggml.eos_token_id"]["value"].get<int>());
  EXPECT_EQ(hp.n_vocab, md["tokenizer.ggml.tokens"]["value"]["count"].get<int64_t>());
  bool has_output = false, has_qbias = false, has_qnorm = false, has_rope_freqs = false;
  for (const auto& t : m["tensors"]) {
    const std::string n = t["name"];
    has_output |= n == "output.weight";
    has_qbias |= n == "blk.0.attn_q.bias";
    has_qnorm |= n == "blk.0.attn_q_norm.weight";
    has_rope_freqs |= n == "rope_freqs.weight";
    if (n == "token_embd.weight") EXPECT_EQ(hp.n_vocab, t["ne"][1].get<int64_t>());
    if (n == "rope_freqs.weight") EXPECT_EQ(hp.head_dim / 2, t["ne"][0].get<int64_t>());
  }
  EXPECT_EQ(hp.tied_embeddings, !has_output);
  EXPECT_EQ(hp.attn_bias, has_qbias);
  EXPECT_EQ(hp.qk_norm, has_qnorm);
  EXPECT_EQ(hp.rope_scaling == RopeScalingType::Llama3, has_rope_freqs);
}

ModelHparams from_json(const std::string& s) { return hparams_from_hf_config_json(s, "config.json"); }

std::string error_of(const std::string& s) {
  return samq::test::error_text([&] { from_json(s); });
}

const char* kBase = R"("hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
  "intermediate_size": 768, "vocab_size": 1000, "max_position_embeddings": 2048)";

}  // namespace

TEST(Hparams, ReferenceModel) {
  ModelHparams hp = hparams_from_hf_config(samq::test::shared_path("models/refcode-32m"));
  EXPECT_EQ(hp.arch, "llama");
  EXPECT_EQ(hp.hf_architecture, "LlamaForCausalLM");
  EXPECT_EQ(hp.n_vocab, 8192);
  EXPECT_EQ(hp.n_layer, 8);
  EXPECT_EQ(hp.n_embd, 512);
  EXPECT_EQ(hp.n_ff, 1536);
  EXPECT_EQ(hp.n_head, 8);
  EXPECT_EQ(hp.n_head_kv, 2);
  EXPECT_EQ(hp.head_dim, 64);
  EXPECT_EQ(hp.rope_theta, 500000.0f);
  EXPECT_EQ(hp.rope_scaling, RopeScalingType::None);
  EXPECT_EQ(hp.rms_eps, 1e-5f);
  EXPECT_FALSE(hp.tied_embeddings);
  EXPECT_EQ(hp.source_dtype, "bf16");
  EXPECT_EQ(hp.n_embd_kv(), 128);
  expect_matches_manifest(hp, "golden/refcode-32m-bf16.manifest.json");
  // config.json path works as well as the directory.
  EXPECT_EQ(hparams_from_hf_config(samq::test::shared_path("models/refcode-32m/config.json")).n_ff, 1536);
}

TEST(Hparams, ArchFixtures) {
  for (const char* d : {"llama3-ropescaled", "qwen2-tied-bias", "qwen3-qknorm"}) {
    SCOPED_TRACE(d);
    const std::string dir = std::string("golden/archs/") + d;
    ModelHparams hp = hparams_from_hf_config(samq::test::shared_path(dir));
    expect_matches_manifest(hp, dir + "/llamacpp-f32.manifest.json");
  }
  ModelHparams l3 = hparams_from_hf_config(samq::test::shared_path("golden/archs/llama3-ropescaled"));
  EXPECT_EQ(l3.rope_scaling, RopeScalingType::Llama3);
  EXPECT_EQ(l3.rope_factor, 8.0f);
  EXPECT_EQ(l3.rope_low_freq_factor, 1.0f);
  EXPECT_EQ(l3.rope_high_freq_factor, 4.0f);
  EXPECT_EQ(l3.rope_orig_ctx, 256);
  EXPECT_EQ(l3.source_dtype, "f16");
  ModelHparams q2 = hparams_from_hf_config(samq::test::shared_path("golden/archs/qwen2-tied-bias"));
  EXPECT_EQ(q2.arch, "qwen2");
  EXPECT_EQ(q2.n_vocab, 8256);  // padded beyond the tokenizer's 8192
  EXPECT_TRUE(q2.attn_bias);
  EXPECT_TRUE(q2.tied_embeddings);
  ModelHparams q3 = hparams_from_hf_config(samq::test::shared_path("golden/archs/qwen3-qknorm"));
  EXPECT_TRUE(q3.qk_norm);
  EXPECT_EQ(q3.head_dim, 64);  // explicit, != hidden/heads
  EXPECT_EQ(q3.n_embd_q(), 256);
}

TEST(Hparams, OldStyleRopeKeysAndMistral) {
  ModelHparams a = from_json(std::string(R"({"architectures":["LlamaForCausalLM"],)") + kBase +
                             R"(, "rope_theta": 500000, "rope_scaling": {"rope_type": "llama3", "factor": 32.0,
      "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
      "num_key_value_heads": 2, "bos_token_id": 128000, "eos_token_id": [128001, 128008], "torch_dtype": "bfloat16"})");
  EXPECT_EQ(a.rope_theta, 500000.0f);
  EXPECT_EQ(a.rope_scaling, RopeScalingType::Llama3);
  EXPECT_EQ(a.rope_factor, 32.0f);
  EXPECT_EQ(a.rope_orig_ctx, 8192);
  EXPECT_EQ(a.eos_id, 128001);
  EXPECT_EQ(a.bos_id, 128000);
  EXPECT_EQ(a.source_dtype, "bf16");
  EXPECT_EQ(a.rms_eps, 1e-6f);  // transformers' default

  ModelHparams lin = from_json(std::string(R"({"architectures":["MistralForCausalLM"],)") + kBase +
                               R"(, "rope_scaling": {"type": "linear", "factor": 4}, "rms_norm_eps": 1e-5})");
  EXPECT_EQ(lin.arch, "llama");
  EXPECT_EQ(lin.hf_architecture, "MistralForCausalLM");
  EXPECT_EQ(lin.rope_scaling, RopeScalingType::Linear);
  EXPECT_EQ(lin.rope_factor, 4.0f);
  EXPECT_EQ(lin.rope_theta, 10000.0f);
  EXPECT_EQ(lin.n_head_kv, 4);  // defaults to n_head
  EXPECT_EQ(lin.head_dim, 64);

  ModelHparams none = from_json(std::string(R"({"model_type":"qwen2",)") + kBase + R"(, "rope_scaling": null})");
  EXPECT_EQ(none.arch, "qwen2");
  EXPECT_TRUE(none.attn_bias);
  EXPECT_EQ(none.rope_scaling, RopeScalingType::None);
  ModelHparams bias = from_json(std::string(R"({"architectures":["LlamaForCausalLM"],)") + kBase +
                                R"(, "attention_bias": true, "tie_word_embeddings": true})");
  EXPECT_TRUE(bias.attn_bias);
  EXPECT_TRUE(bias.tied_embeddings);
}

TEST(Hparams, ClearErrors) {
  EXPECT_NE(error_of(std::string(R"({"architectures":["GemmaForCausalLM"],)") + kBase + "}").find("GemmaForCausalLM"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(R"({"architectures":["GemmaForCausalLM"],)") + kBase + "}").find("not supported"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"architectures":["LlamaForCausalLM"], "hidden_size": 256})").find("'vocab_size'"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(R"({"architectures":["LlamaForCausalLM"],)") + kBase +
                     R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4}})")
                .find("yarn"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"architectures":["LlamaForCausalLM"], "vocab_size": 10, "max_position_embeddings": 10,
                         "hidden_size": "big"})").find("hidden_size"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(R"({"architectures":["LlamaForCausalLM"],)") + kBase +
                     R"(, "num_key_value_heads": 3})")
                .find("n_head_kv"),
            std::string::npos);
  EXPECT_NE(error_of("{not json").find("does not parse"), std::string::npos);
  EXPECT_NE(error_of("[]").find("object"), std::string::npos);
  EXPECT_NE(error_of("{}").find("architectures"), std::string::npos);
  EXPECT_THROW(hparams_from_hf_config(samq::test::temp_dir()), Error);
}

// Issue-16 fixtures (tests/data/archs): Mistral's window, Mixtral's experts (arch llama, expert
// width = intermediate_size, always renormalised), Phi-3's fused tensors; Gemma 3 refused by name;
// the fields samq cannot honour refused by name.
TEST(Hparams, Issue16Architectures) {
  const auto dir = [](const char* a) { return samq::test::source_path(std::string("tests/data/archs/") + a); };
  const ModelHparams mi = hparams_from_hf_config(dir("mistral"));
  EXPECT_EQ(mi.arch, "llama");
  EXPECT_EQ(mi.n_swa, 16);
  EXPECT_FALSE(mi.is_moe());
  const ModelHparams mx = hparams_from_hf_config(dir("mixtral"));
  EXPECT_EQ(mx.arch, "llama");
  EXPECT_EQ(mx.hf_architecture, "MixtralForCausalLM");
  EXPECT_EQ(mx.n_expert, 4);
  EXPECT_EQ(mx.n_expert_used, 2);
  EXPECT_EQ(mx.n_ff_exp, 128);
  EXPECT_TRUE(mx.expert_weights_norm);
  EXPECT_EQ(mx.n_swa, 0);
  const ModelHparams ph = hparams_from_hf_config(dir("phi3"));
  EXPECT_EQ(ph.arch, "phi3");
  EXPECT_TRUE(ph.fused_qkv_gate_up);
  EXPECT_EQ(ph.head_dim, 16);
  EXPECT_EQ(ph.n_swa, 0);
  try {
    hparams_from_hf_config(dir("gemma3"));
    ADD_FAILURE() << "gemma3 must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Gemma3ForCausalLM"), std::string::npos) << e.what();
  }
  EXPECT_NE(error_of(std::string(R"({"architectures":["Qwen2ForCausalLM"],)") + kBase + R"(, "use_sliding_window": true})")
                .find("use_sliding_window"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(R"({"architectures":["Phi3ForCausalLM"],)") + kBase +
                     R"(, "rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.75}})")
                .find("partial_rotary_factor"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(R"({"architectures":["MixtralForCausalLM"],)") + kBase +
                     R"(, "num_local_experts": 4, "num_experts_per_tok": 2, "norm_topk_prob": false})")
                .find("norm_topk_prob"),
            std::string::npos);
}

TEST(Hparams, FromLlamaCppGguf) {
  const ModelHparams hf = hparams_from_hf_config(samq::test::shared_path("models/refcode-32m"));
  for (const char* rel : {"golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf", "golden/anchors/refcode-32m-Q3_K_M-imatrix.gguf"}) {
    SCOPED_TRACE(rel);
    GgufFile f = GgufFile::open(samq::test::shared_path(rel));
    ModelHparams g = hparams_from_gguf(f);
    EXPECT_EQ(g.arch, hf.arch);
    EXPECT_EQ(g.n_vocab, hf.n_vocab);
    EXPECT_EQ(g.n_ctx_train, hf.n_ctx_train);
    EXPECT_EQ(g.n_embd, hf.n_embd);
    EXPECT_EQ(g.n_layer, hf.n_layer);
    EXPECT_EQ(g.n_head, hf.n_head);
    EXPECT_EQ(g.n_head_kv, hf.n_head_kv);
    EXPECT_EQ(g.head_dim, hf.head_dim);
    EXPECT_EQ(g.n_ff, hf.n_ff);
    EXPECT_EQ(g.rope_theta, hf.rope_theta);
    EXPECT_EQ(g.rms_eps, hf.rms_eps);
    EXPECT_EQ(g.rope_scaling, RopeScalingType::None);
    EXPECT_EQ(g.tied_embeddings, hf.tied_embeddings);
    EXPECT_EQ(g.attn_bias, false);
    EXPECT_EQ(g.qk_norm, false);
    EXPECT_EQ(g.bos_id, hf.bos_id);
    EXPECT_EQ(g.eos_id, hf.eos_id);
  }
  EXPECT_EQ(hparams_from_gguf(GgufFile::open(samq::test::shared_path("golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf")))
                .source_dtype,
            "q4_K");
  // An imatrix file has no architecture: a clear error.
  GgufFile im = GgufFile::open(samq::test::shared_path("golden/anchors/refcode-32m-imatrix.gguf"));
  EXPECT_THROW(hparams_from_gguf(im), Error);
}

TEST(Hparams, Qwen3MoeReferenceAndExpertKeys) {
  // refmoe-31m's config says num_local_experts; llama.cpp's converter wrote expert_count from it.
  ModelHparams hp = hparams_from_hf_config(samq::test::shared_path("models/refmoe-31m"));
  EXPECT_EQ(hp.arch, "qwen3moe");
  EXPECT_TRUE(hp.qk_norm);
  EXPECT_TRUE(hp.expert_weights_norm);
  expect_matches_manifest(hp, "golden/refmoe-31m-bf16.manifest.json");
  const json md = json::parse(read_file(samq::test::shared_path("golden/refmoe-31m-bf16.manifest.json")))["metadata"];
  EXPECT_EQ(hp.n_expert, md["qwen3moe.expert_count"]["value"].get<int64_t>());
  EXPECT_EQ(hp.n_expert_used, md["qwen3moe.expert_used_count"]["value"].get<int64_t>());
  EXPECT_EQ(hp.n_ff_exp, md["qwen3moe.expert_feed_forward_length"]["value"].get<int64_t>());

  const std::string moe = std::string(R"({"architectures":["Qwen3MoeForCausalLM"],)") + kBase +
                          R"(, "head_dim": 64, "num_experts_per_tok": 2, "moe_intermediate_size": 128)";
  // Hub checkpoints say num_experts: the same model.
  const ModelHparams a = from_json(moe + R"(, "num_experts": 4, "norm_topk_prob": true})");
  const ModelHparams b = from_json(moe + R"(, "num_local_experts": 4, "norm_topk_prob": true})");
  EXPECT_EQ(a.n_expert, 4);
  EXPECT_EQ(b.n_expert, 4);
  EXPECT_EQ(a.n_expert_used, 2);
  EXPECT_EQ(a.n_ff_exp, 128);
  EXPECT_FALSE(from_json(moe + R"(, "num_experts": 4})").expert_weights_norm);  // transformers' default
  // What samq does not support is refused, naming the field.
  EXPECT_NE(error_of(moe + "}").find("num_experts"), std::string::npos);
  EXPECT_NE(error_of(moe + R"(, "num_experts": 4, "num_local_experts": 8})").find("disagree"), std::string::npos);
  EXPECT_NE(error_of(moe + R"(, "num_experts": 4, "decoder_sparse_step": 2})").find("decoder_sparse_step"),
            std::string::npos);
  EXPECT_NE(error_of(moe + R"(, "num_experts": 4, "mlp_only_layers": [0]})").find("mlp_only_layers"),
            std::string::npos);
  const std::string five_of_four = std::string(R"({"architectures":["Qwen3MoeForCausalLM"],)") + kBase +
                                   R"(, "num_experts": 4, "num_experts_per_tok": 5, "moe_intermediate_size": 128})";
  EXPECT_NE(error_of(five_of_four).find("num_experts_per_tok"), std::string::npos);
  EXPECT_NE(error_of(moe + R"(, "num_experts": 4, "shared_expert_intermediate_size": 64})").find("shared"),
            std::string::npos);
}
