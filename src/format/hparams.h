// ModelHparams: THE hyperparameter struct of samq (one vocabulary, declared once), filled
// from an HF config.json or from a GGUF file's metadata. Names follow llama.cpp's
// (n_embd, n_head_kv, n_ff, n_layer, ...).
//
// Supported HF architectures: LlamaForCausalLM, MistralForCausalLM (sliding-window attention
// when config.json's sliding_window is set) and MixtralForCausalLM (mixture of experts) as arch
// "llama", Qwen2ForCausalLM ("qwen2"), Qwen3ForCausalLM ("qwen3"), Qwen3MoeForCausalLM
// ("qwen3moe": every layer a softmax-routed top-k mixture of SwiGLU experts, no shared expert),
// Phi3ForCausalLM ("phi3": fused attn_qkv and gate+up ffn_up). Others get a clear error.
// config.json: both the old `rope_theta`/`rope_scaling` keys and the newer `rope_parameters`
// are understood (rope types default, linear, llama3).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace samq {

class GgufFile;

enum class RopeScalingType { None, Linear, Llama3 };
std::string_view rope_scaling_name(RopeScalingType t);  // "none", "linear", "llama3"

struct ModelHparams {
  std::string arch;             // GGUF architecture: "llama", "qwen2", "qwen3", "qwen3moe", "phi3"
  std::string hf_architecture;  // e.g. "MistralForCausalLM" (empty when read from GGUF)

  int64_t n_vocab = 0;      // embedding rows (config vocab_size, may exceed the tokenizer's)
  int64_t n_ctx_train = 0;  // max_position_embeddings / <arch>.context_length
  int64_t n_embd = 0;       // hidden_size
  int64_t n_layer = 0;      // num_hidden_layers
  int64_t n_head = 0;       // num_attention_heads
  int64_t n_head_kv = 0;    // num_key_value_heads (defaults to n_head)
  int64_t head_dim = 0;     // head_dim, else n_embd / n_head
  int64_t n_ff = 0;         // intermediate_size (dense FFN; written but unused by qwen3moe)

  // Mixture of experts (0 / false for dense models): every layer's FFN is n_expert SwiGLU experts
  // of width n_ff_exp; a router (ffn_gate_inp) picks n_expert_used per token by softmax + top-k,
  // the chosen weights renormalised to sum 1 when expert_weights_norm (norm_topk_prob).
  int64_t n_expert = 0;        // num_experts / num_local_experts / <arch>.expert_count
  int64_t n_expert_used = 0;   // num_experts_per_tok / <arch>.expert_used_count
  int64_t n_ff_exp = 0;        // moe_intermediate_size / <arch>.expert_feed_forward_length
  bool expert_weights_norm = false;

  float rope_theta = 10000.0f;
  RopeScalingType rope_scaling = RopeScalingType::None;
  float rope_factor = 1.0f;            // linear and llama3
  float rope_low_freq_factor = 1.0f;   // llama3
  float rope_high_freq_factor = 4.0f;  // llama3
  int64_t rope_orig_ctx = 0;           // original_max_position_embeddings (llama3)

  float rms_eps = 1e-5f;
  bool tied_embeddings = false;  // no separate output.weight
  bool attn_bias = false;        // q/k/v projections have biases (qwen2)
  bool qk_norm = false;          // per-head RMSNorm on q and k (qwen3)
  // Sliding-window attention on every layer (Mistral): a query at position p sees the keys at
  // positions p - n_swa + 1 .. p (itself included, as HF transformers' and llama.cpp's masks);
  // 0: none. GGUF: <arch>.attention.sliding_window.
  int64_t n_swa = 0;
  // phi3: q/k/v are one fused attn_qkv matrix (rows q, k, v) and ffn_up holds gate then up
  // (2 * n_ff rows), as llama.cpp's converter stores them.
  bool fused_qkv_gate_up = false;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  std::string source_dtype;  // "bf16", "f16", "f32" (HF dtype), or the GGUF's dominant ggml type name

  int64_t n_embd_q() const { return n_head * head_dim; }      // rows of attn_q
  int64_t n_embd_kv() const { return n_head_kv * head_dim; }  // rows of attn_k / attn_v
  int64_t n_rot() const { return head_dim; }
  bool is_moe() const { return n_expert > 0; }

  // Throws samq::Error naming `source` and the field if a dimension is missing or inconsistent.
  void validate(const std::string& source) const;
};

// `path`: an HF model directory (containing config.json) or a config.json file.
ModelHparams hparams_from_hf_config(const std::string& path);
// Parses config.json text; `source` names it in errors. (Used by the fuzzer too.)
ModelHparams hparams_from_hf_config_json(std::string_view json_text, const std::string& source);
// From GGUF metadata (<arch>.* keys, tokenizer ids) and tensor presence (output.weight,
// attn_q.bias, attn_q_norm, rope_freqs). Llama3 scaling factors are not stored in GGUF
// (llama.cpp bakes them into rope_freqs.weight, one divisor per rotary pair): a file with that
// tensor gets rope_scaling = Llama3 with rope_factor = 0 and rope_orig_ctx = 0, meaning
// "use rope_freqs.weight".
ModelHparams hparams_from_gguf(const GgufFile& f);

}  // namespace samq
