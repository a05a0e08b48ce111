// Tensor names: HF checkpoint names -> GGUF names as llama.cpp's converter maps them
// (gguf-py tensor_mapping.py facts restated in ../shared/docs/ggml-formats.md §1.7-1.8), the
// "kind" and layer of a GGUF name, and the Llama-family q/k row permutation.
//
//   model.embed_tokens.weight                 -> token_embd.weight
//   model.norm.weight                         -> output_norm.weight
//   lm_head.weight                            -> output.weight
//   model.layers.N.input_layernorm.weight     -> blk.N.attn_norm.weight
//   model.layers.N.self_attn.{q,k,v}_proj.*   -> blk.N.attn_{q,k,v}.{weight,bias}
//   model.layers.N.self_attn.o_proj.*         -> blk.N.attn_output.*
//   model.layers.N.self_attn.{q,k}_norm.weight -> blk.N.attn_{q,k}_norm.weight
//   model.layers.N.post_attention_layernorm.* -> blk.N.ffn_norm.*
//   model.layers.N.mlp.{gate,up,down}_proj.*  -> blk.N.ffn_{gate,up,down}.*
//   model.layers.N.mlp.gate.weight            -> blk.N.ffn_gate_inp.weight (MoE router)
//   model.layers.N.mlp.experts.E.{gate,up,down}_proj.weight
//                                             -> expert E of blk.N.ffn_{gate,up,down}_exps.weight
//                                                (3-D: the converter stacks the experts)
//   Mixtral: model.layers.N.block_sparse_moe.gate.weight -> blk.N.ffn_gate_inp.weight,
//            model.layers.N.block_sparse_moe.experts.E.w{1,3,2}.weight -> ffn_{gate,up,down}_exps
//   Phi-3:   model.layers.N.self_attn.qkv_proj.weight  -> blk.N.attn_qkv.weight (fused q, k, v)
//            model.layers.N.mlp.gate_up_proj.weight    -> blk.N.ffn_up.weight (gate rows, then up)
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace samq {

// GGUF name of an HF tensor, or nullopt for tensors llama.cpp's converter skips
// (rotary_emb.inv_freq, ...). Throws samq::Error for an unknown name under model.layers.
std::optional<std::string> hf_to_gguf_name(std::string_view hf_name);

// An HF per-expert tensor: "model.layers.3.mlp.experts.5.up_proj.weight" -> {layer 3, expert 5,
// gguf "blk.3.ffn_up_exps.weight"}; nullopt for other names.
struct HfExpertPart {
  int layer = -1, expert = -1;
  std::string gguf;
};
std::optional<HfExpertPart> parse_hf_expert_name(std::string_view hf_name);

// Parts of a GGUF tensor name: "blk.7.ffn_down.weight" -> {kind "ffn_down", layer 7,
// suffix "weight"}; "output.weight" -> {"output", -1, "weight"}. Unknown layouts give the
// name without its suffix as kind.
struct GgufNameParts {
  std::string kind;    // token_embd, output_norm, output, rope_freqs, attn_norm, attn_q, attn_k,
                       // attn_v, attn_qkv, attn_output, attn_q_norm, attn_k_norm, ffn_norm, ffn_gate,
                       // ffn_up, ffn_down, ffn_gate_inp, ffn_{gate,up,down}_exps
  int layer = -1;      // -1 for tensors outside the blocks
  std::string suffix;  // "weight" or "bias"
};
GgufNameParts parse_gguf_name(std::string_view gguf_name);
inline std::string tensor_kind(std::string_view gguf_name) { return parse_gguf_name(gguf_name).kind; }
inline int tensor_layer(std::string_view gguf_name) { return parse_gguf_name(gguf_name).layer; }

// True for tensors llama.cpp's converter keeps in F32 whatever --outtype says (1-D tensors:
// norms, biases, rope_freqs) and llama-quantize never quantizes.
bool keeps_f32(std::string_view gguf_name, int n_dims);

// Llama-family q/k permutation HF -> GGUF (docs/ggml-formats.md §1.8): within each of n_head
// heads of hd = rows/n_head rows, HF row (h*hd + i*hd/2 + j) moves to GGUF row (h*hd + 2j + i),
// i in {0,1}, j < hd/2 (rotate-half layout -> interleaved pairs). Works on rows of any element
// type (row_bytes per row; a bias is rows of one element). n_head is the number of query
// heads for q and of KV heads for k. in and out must not overlap.
void permute_qk_rows(const void* in, void* out, int64_t rows, size_t row_bytes, int n_head);
// The inverse (GGUF -> HF), for tests and for reading GGUF back into HF order.
void unpermute_qk_rows(const void* in, void* out, int64_t rows, size_t row_bytes, int n_head);

}  // namespace samq
