// A loaded model: hparams + weights as a plain struct (llm.c's ParameterTensors), from a GGUF
// file of any supported types (tensors stay in the memory map) or from an HF directory
// (tensors read through export/source_model.h into owned f32 buffers).
//
// Goals: one struct the forward pass, the analysis (helper H) and the server read; tensors
// addressed by their GGUF names; any tensor replaceable in memory (e.g. by its
// quantize->dequantize round trip, for measuring sensitivity without writing files).
// MoE (qwen3moe): the experts of a layer are one 3-D tensor each for gate, up and down, held as
// n_mat stacked matrices (Tensor::n_mat), see model/moe.h.
// Phi-3: attn_qkv and ffn_up hold fused matrices (q, k, v rows; gate, up rows), split after the
// matmul (Ops::copy_cols). Non-goals: architectures other than llama/mistral/mixtral/qwen2/qwen3/
// qwen3moe/phi3.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backend/ops.h"
#include "core/ggml_type.h"
#include "format/hparams.h"

namespace samq {

class GgufFile;
class Tokenizer;

// One weight tensor: (rows, cols) = (out_features, in_features) = (ne[1], ne[0]).
// 1-D tensors (norms, biases, rope_freqs) have rows = 1. `data` points into the model file's
// memory map or into `owned`. A 3-D expert tensor (GGUF ne = {cols, rows/n_mat, n_mat}) is n_mat
// matrices of rows/n_mat rows stacked: `rows` counts all of them, so row-wise code (quantization,
// round trips, sizes) sees one tall matrix; mat(e) views matrix e.
struct Tensor {
  std::string name;  // GGUF name, e.g. "blk.3.ffn_down.weight"
  GgmlType type = GgmlType::F32;
  int64_t rows = 0, cols = 0;
  int64_t n_mat = 1;  // stacked matrices (experts): ne[2] of a 3-D tensor
  const uint8_t* data = nullptr;
  std::shared_ptr<std::vector<uint8_t>> owned;  // set when the bytes live on the heap
  // The CPU backend's repacked form (Ops::prepare_weight), made by Model::load for matmul
  // weights; view() hands it to the matmul. Dropped when the tensor is replaced.
  std::shared_ptr<const PreparedWeight> prepared;

  bool present() const { return data != nullptr; }
  int64_t n_elements() const { return rows * cols; }
  int64_t row_bytes() const { return ggml_row_size(type, cols); }
  int64_t n_bytes() const { return rows * row_bytes(); }
  WeightView view() const {
    WeightView v{type, rows, cols, data, present() ? row_bytes() : 0};
    v.prepared = prepared.get();
    return v;
  }
  const float* f32() const;  // data as float*; throws unless type == F32
  int64_t mat_rows() const { return rows / n_mat; }
  // Matrix e of a stacked tensor, (mat_rows, cols), without a prepared form.
  WeightView mat(int64_t e) const;
};

struct LayerWeights {
  Tensor attn_norm;                            // (1, n_embd) f32
  Tensor attn_q, attn_k, attn_v;               // (n_head*hd, n_embd), (n_head_kv*hd, n_embd) x2
  Tensor attn_q_bias, attn_k_bias, attn_v_bias;  // optional (qwen2): (1, rows)
  Tensor attn_qkv;                             // phi3 instead of attn_q/k/v: (n_head*hd + 2*n_head_kv*hd, n_embd)
  Tensor attn_q_norm, attn_k_norm;             // optional (qwen3): (1, hd)
  Tensor attn_output;                          // (n_embd, n_head*hd)
  Tensor attn_output_bias;                     // optional
  Tensor ffn_norm;                             // (1, n_embd)
  Tensor ffn_gate, ffn_up;                     // (n_ff, n_embd); phi3: no ffn_gate, ffn_up (2*n_ff, n_embd) = gate rows, up rows
  Tensor ffn_down;                             // (n_embd, n_ff)
  // MoE layers instead of ffn_gate/up/down:
  Tensor ffn_gate_inp;                         // router (n_expert, n_embd), f32
  Tensor ffn_gate_exps, ffn_up_exps;           // n_expert x (n_ff_exp, n_embd)
  Tensor ffn_down_exps;                        // n_expert x (n_embd, n_ff_exp)
};

struct ModelWeights {
  Tensor token_embd;   // (n_vocab, n_embd)
  Tensor output_norm;  // (1, n_embd)
  Tensor output;       // (n_vocab, n_embd); absent when tied: the forward uses token_embd
  Tensor rope_freqs;   // optional (1, n_rot/2), llama3 scaling factors
  std::vector<LayerWeights> layers;

  const Tensor& lm_head() const { return output.present() ? output : token_embd; }
};

// Visits every present tensor in GGUF file order (token_embd, layers..., output_norm, output).
void for_each_tensor(ModelWeights& w, const std::function<void(Tensor&)>& fn);
void for_each_tensor(const ModelWeights& w, const std::function<void(const Tensor&)>& fn);

class Model {
 public:
  // path: a .gguf file or an HF directory (config.json + safetensors). Throws samq::Error.
  // The weights are prepared for `ops` (prepare_weights): for cpu_ops(), matmul weights are
  // repacked (int8 tiles for many-token matmuls, backend/cpu/packed_gemm.h) unless
  // SAMQ_REPACK=0; for a device backend every tensor is uploaded.
  static std::shared_ptr<Model> load(const std::string& path, const Ops& ops = cpu_ops());
  // Layer streaming (analyze/layer_stream.h): with prepare_layers = false only the tensors outside
  // the blocks (embedding, output norm and head, rope factors) are prepared; a pass prepares
  // one layer at a time with prepare_layer and drops it with release_layer.
  static std::shared_ptr<Model> load(const std::string& path, const Ops& ops, bool prepare_layers);
  void prepare_layer(int layer);
  // Drops the layer's prepared forms (device copies, repacked tiles) and advises the OS to drop
  // its pages of the mapped file from this process's memory (they are read again when touched).
  void release_layer(int layer);
  // Asks the OS to read the layer's mapped bytes ahead (the next layer, while one computes).
  void prefetch_layer(int layer) const;
  // Bytes of the layer's tensors in the file (its weights' size in memory once prepared).
  int64_t layer_bytes(int layer) const;
  // Makes the prepared forms of the weights for `ops` and makes it the model's backend: matmul
  // weights on host-memory backends, every tensor on device backends. Tensors replaced later
  // (replace()) are prepared the same way.
  void prepare_weights(const Ops& ops);
  // The backend the weights are prepared for (KV caches are made in its memory).
  const Ops* ops = &cpu_ops();

  // For HF input: compute RoPE as HF transformers does for an F16/BF16 checkpoint (inverse
  // frequencies rounded to the checkpoint dtype, see RopeParams::inv_freq_type). Off by
  // default: samq computes as llama.cpp (exact float32), so an HF directory and the GGUF
  // converted from it give the same numbers. The golden-logit tests turn it on.
  bool transformers_rope = false;
  // Round as llama.cpp's CPU backend does (activations to the weight type's dot type, f16 KV
  // cache); on by default. Off: exact float32 everywhere (the HF golden-logit tests).
  bool ggml_numerics = true;

  ModelHparams hparams;
  ModelWeights weights;
  std::string path;
  // True when loaded from an HF directory: q/k rows are in HF's rotate-half order, so RoPE
  // runs in NeoX mode for every architecture (see model.cpp).
  bool hf_layout = false;

  Tensor* find(std::string_view name);  // nullptr if absent
  const Tensor* find(std::string_view name) const;

  // Replaces tensor `name` by its quantize->dequantize round trip through `type` (held as F32
  // in memory; imatrix = per-column importance or null, n_mat * cols values for stacked experts).
  // Returns the previous tensor so the
  // caller can put it back with restore(). No file is written.
  Tensor replace_with_round_trip(std::string_view name, GgmlType type, const float* imatrix);
  // Replaces tensor `t.name` by `t` (same shape); returns the previous one.
  Tensor replace(Tensor t);
  void restore(Tensor previous) { replace(std::move(previous)); }

  // Whole tensor as f32 (rows*cols), whatever its type.
  std::vector<float> tensor_f32(const Tensor& t) const;

  std::shared_ptr<void> keep_alive;  // the memory map / source the views point into
  std::shared_ptr<const GgufFile> gguf;  // the file, when loaded from GGUF (metadata, vocab)
};

// A 1-D F32 tensor (norm weight, bias) as the prepared backend sees it: its device copy on
// device backends, else the host data.
const float* backend_f32(const Tensor& t);

// The model's tokenizer: from the GGUF vocab arrays, or tokenizer.json of the HF directory.
Tokenizer load_tokenizer(const Model& m);

// RoPE parameters of this model (norm style by architecture, freq factors from rope_freqs).
RopeParams rope_params(const Model& m);

}  // namespace samq
