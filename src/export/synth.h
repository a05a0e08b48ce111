// `samq synth`: a shape-exact HF checkpoint with random weights (statistics like trained ones,
// export/synth_weights.h), for scale and speed tests only. Quality figures come from trained
// models only.
//
//   SynthOptions o;
//   o.like = "llama3-8b";
//   o.layers = 4;  // 0: the real model's layer count
//   SynthResult r = write_synth_checkpoint(o, "out/synth-8b-4L");
//
// The directory gets model-0000i-of-0000n.safetensors shards (at most shard_bytes each, unless
// one tensor is larger; HF's save_pretrained rule), model.safetensors.index.json, config.json
// (the real model's fields, num_hidden_layers = layers) and the reference tokenizer
// (tokenizer.json and tokenizer_config.json copied from tokenizer_dir). The config's vocab_size
// is the target model's; the tokenizer is the reference one, with fewer tokens: loaders pad its
// vocabulary to vocab_size (Tokenizer::from_hf_dir), as for any checkpoint whose embedding has
// more rows than its tokenizer has tokens. bos/eos_token_id are the reference tokenizer's.
//
// Writing streams: each tensor is generated in slabs of about 64 MiB (two in flight: one being
// generated, one being written), each shard goes to a temp file renamed into place when
// complete, and the bytes are deterministic for (like, layers, seed) whatever the thread count.
// A tensor's values depend on (seed, its name, its shape) only, so --layers 4 and --layers 32
// share their first four layers.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace samq {

struct SynthShape {
  std::string like;             // "llama3-8b", ...
  std::string description;      // one line for --help
  std::string hf_architecture;  // "LlamaForCausalLM", "Qwen2ForCausalLM"
  std::string model_type;       // "llama", "qwen2"
  int64_t hidden = 0, ff = 0, heads = 0, kv_heads = 0;
  int64_t head_dim = 0;  // written to config.json only when > 0 (as the real config has it)
  int64_t layers = 0;    // the real model's count
  int64_t vocab = 0, max_pos = 0;
  double rope_theta = 10000, rms_eps = 1e-5;
  bool llama3_rope = false;  // rope_scaling {llama3, factor 8, low 1, high 4, original 8192}
  bool tied = false;
  bool qkv_bias = false;  // qwen2: q/k/v biases (implied by the architecture, no config key)

  int64_t head_size() const { return head_dim > 0 ? head_dim : hidden / heads; }
};

// The shapes --like accepts, in --help order: llama3-8b, llama3-70b, qwen2.5-7b, and the small
// test shapes tiny (Llama-3 architecture, hidden 256) and tiny-qwen2 (with q/k/v biases).
const std::vector<SynthShape>& synth_shapes();
const SynthShape& synth_shape(std::string_view like);  // throws samq::Error listing the names

struct SynthOptions {
  std::string like;
  int64_t layers = 0;  // 0: the real count; else 1..real count
  uint64_t seed = 0;
  uint64_t shard_bytes = 5000000000ull;  // HF's default max_shard_size "5GB"
  bool config_only = false;              // config.json + tokenizer, no weights
  std::string tokenizer_dir;             // reference tokenizer; empty: find_reference_tokenizer()
};

struct SynthResult {
  std::string like;
  int64_t layers = 0;
  int n_shards = 0;
  int64_t n_tensors = 0;
  int64_t n_params = 0;
  uint64_t tensor_bytes = 0;  // sum of tensor data
  uint64_t file_bytes = 0;    // sum of shard sizes (data + headers)
  std::vector<std::string> files;  // written, relative to the output directory
};

// config.json text for `shape` with `layers` layers and the given special token ids.
std::string synth_config_json(const SynthShape& shape, int64_t layers, int32_t bos_id, int32_t eos_id);

// Parses a size such as "5GB", "500MB", "2GiB", "123456" (bytes). Throws samq::Error.
uint64_t parse_byte_size(std::string_view text);

// The reference tokenizer's directory: $SAMQ_SHARED_DIR/models/refcode-32m, else
// ../shared/models/refcode-32m beside the samq binary's repository (<exe>/../../shared) or the
// current directory. Throws samq::Error naming where it looked.
std::string find_reference_tokenizer();

// Writes the checkpoint into out_dir (created if missing). Throws samq::Error with a clear
// message on a bad option or an unwritable directory.
SynthResult write_synth_checkpoint(const SynthOptions& opt, const std::string& out_dir);

}  // namespace samq
