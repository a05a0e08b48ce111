// A source model, opened from a GGUF file or an HF directory, seen the way llama.cpp's
// converter would write it: GGUF tensor names and dims, the GGUF metadata key/values in the
// converter's order and types, and each tensor's values after name mapping and the Llama q/k
// row permutation. Used by `samq convert` (HF -> GGUF) and by `samq quantize`/`samq analyze`
// when given either kind of input.
//
// Tensor order (llama.cpp's converter): generated tensors first (rope_freqs.weight for llama3
// RoPE scaling), then the safetensors shards in sorted file-name order, each shard's tensors
// sorted by HF name. For a GGUF input: the file's order.
//
// Streaming: nothing is read until read_f32(i); each call converts one tensor, so peak memory
// is about the largest tensor. Thread-safe for concurrent read_f32 calls.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "format/gguf.h"
#include "format/hparams.h"

namespace samq {

class Tokenizer;

struct SourceTensor {
  std::string name;         // GGUF name, e.g. "blk.0.attn_q.weight"
  std::string source_name;  // HF name (or the GGUF name); empty for generated tensors
  uint32_t n_dims = 0;      // as llama.cpp writes it (1 for norms, biases, rope_freqs)
  int64_t ne[4] = {1, 1, 1, 1};  // ggml order: ne[0] = cols = in_features
  GgmlType source_type = GgmlType::F32;  // F32/F16/BF16 for HF; the stored type for GGUF
  bool generated = false;   // computed by the converter (rope_freqs), not read from a file

  int64_t cols() const { return ne[0]; }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

// llama_ftype stored in general.file_type for a file whose big tensors are of type t
// (F32 0, F16 1, Q8_0 7, BF16 32, ...). Throws for types without a llama_ftype.
uint32_t llama_ftype_of(GgmlType t);

// The GGUF type llama.cpp's converter gives a tensor for --outtype `out`: 1-D tensors (norms,
// biases) and rope_freqs stay F32; with Q8_0, a tensor whose row length is not a multiple of
// 32 falls back to F16, as the converter does.
GgmlType convert_tensor_type(const SourceTensor& t, GgmlType out);

class SourceModel {
 public:
  virtual ~SourceModel() = default;

  const std::string& path() const { return path_; }
  bool is_gguf() const { return is_gguf_; }
  const ModelHparams& hparams() const { return hparams_; }
  const std::vector<SourceTensor>& tensors() const { return tensors_; }
  int64_t find_tensor(std::string_view gguf_name) const;  // index, or -1

  // The metadata llama.cpp's converter writes, in its order and with its types (HF input),
  // or the file's own metadata (GGUF input). general.file_type holds the source's type
  // (bf16 for a bf16 checkpoint); writers override it with GgufWriter::set (order kept).
  const std::vector<GgufValue>& metadata() const { return metadata_; }
  // Sets every key of metadata() on `w`, with general.file_type = llama_ftype_of(file_type)
  // when file_type is given.
  void write_metadata(GgufWriter& w, std::optional<GgmlType> file_type = std::nullopt) const;

  // The tensor's n_elements() values in GGUF layout (after q/k permutation), as float32:
  // exact for F32/F16/BF16 sources; dequantized for quantized GGUF tensors.
  virtual void read_f32(size_t index, float* out) const = 0;
  // Raw bytes of a GGUF tensor (GGUF input only; nullptr for HF input).
  virtual const uint8_t* raw_data(size_t index) const { return nullptr; }

  // Vocab (built on first use; throws "not supported yet" for non-BPE tokenizers).
  virtual const Tokenizer& tokenizer() const = 0;

  // Identity for artifacts (docs/artifacts.md): sha256 of the GGUF file, or of config.json
  // followed by the safetensors index (or the single safetensors header) for HF input.
  virtual std::string identity_sha256() const = 0;

 protected:
  std::string path_;
  bool is_gguf_ = false;
  ModelHparams hparams_;
  std::vector<SourceTensor> tensors_;
  std::vector<GgufValue> metadata_;
};

// `path`: a .gguf file or an HF directory (config.json + safetensors + tokenizer.json).
// Throws samq::Error naming the path and the problem.
std::unique_ptr<SourceModel> open_source_model(const std::string& path);

}  // namespace samq
