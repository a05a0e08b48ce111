// What llama.cpp's HF converter (convert_hf_to_gguf.py) writes besides the weights: the GGUF
// metadata keys in its order and with its value types, the size label, and the generated
// llama3 RoPE factor tensor. Restated from ../shared/docs/ggml-formats.md §1.6-1.9 and checked
// against the manifests in ../shared/golden.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "format/gguf.h"
#include "format/hparams.h"

namespace samq {

class Tokenizer;

// "33M", "5.8M", "7B": the parameter count in llama.cpp's rounded notation (at least two
// significant digits).
std::string gguf_size_label(int64_t n_params);

// The converter's metadata for the HF checkpoint in `dir` (config.json is re-read to know which
// optional fields are present), in its order:
//   general.architecture, general.type, general.size_label, <arch>.block_count, context_length,
//   embedding_length, feed_forward_length, attention.head_count, attention.head_count_kv,
//   rope.freq_base, attention.layer_norm_rms_epsilon, [MoE: expert_count, expert_used_count],
//   [attention.key_length, value_length], general.file_type, [llama: vocab_size,
//   rope.dimension_count, rope.scaling.*], [qwen3moe: expert_feed_forward_length],
//   general.quantization_version, tokenizer.ggml.* (gpt2: model, pre, tokens, token_type, merges;
//   llama/SentencePiece: add_space_prefix, model, pre, tokens, scores, token_type; then special
//   ids, add_bos/add_eos), tokenizer.chat_template.
// n_params: every parameter; for MoE the shared ones plus those of one expert, and the size label
// becomes "<n_expert>x<that>" (gguf-py's size_label).
std::vector<GgufValue> hf_converter_metadata(const std::string& dir, const ModelHparams& hp, const Tokenizer& tok,
                                             int64_t n_params, uint32_t file_type);

// rope_freqs.weight for llama3 RoPE scaling: one factor per rotary dimension pair (n_rot/2),
// 1 for high frequencies, `factor` for low ones, smoothly interpolated between, computed in
// float32 as the converter does with torch.
std::vector<float> llama3_rope_factors(const std::string& dir, const ModelHparams& hp);

}  // namespace samq
