// llama.cpp's file-type presets (Q2_K ... Q6_K, Q8_0) as baselines: the per-tensor types that
// llama-quantize's mixture rules choose, reproduced from tensor names and shapes alone
// (docs/ggml-formats.md §4: loader order, use_more_bits, the attn_v counter, n_gqa, 70B bump,
// the output/tied-embedding rule and the shape fallback), and the mixture-of-experts rules
// (3-D ffn_*_exps tensors take their layer from the name; with 8 experts attn_v and attn_k become
// Q8_0 and attn_output Q5_K for Q2_K..Q4_K_M). The router (ffn_gate_inp) is never quantized.
#pragma once
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "plan/sensitivity.h"

namespace samq::plan {

struct PresetInfo {
  const char* name;  // "Q4_K_M"
  int ftype;         // llama_ftype id, written as general.file_type
  GgmlType base;     // the preset's default type
};

const std::vector<PresetInfo>& presets();
const PresetInfo* find_preset(std::string_view name);  // case-insensitive; aliases Q3_K, Q4_K, Q5_K

// The type llama-quantize would give each tensor of `s` (same order as s.tensors).
// Non-quantizable tensors keep their single candidate (f32).
std::vector<GgmlType> preset_types(const PresetInfo& p, const Sensitivity& s);

// llama.cpp's shape fallback (§4.4) for a row of `cols` elements; throws when none exists.
GgmlType shape_fallback(GgmlType t, int64_t cols);

// The llama_ftype that best describes a mixed file: the ftype whose base type holds the most
// bytes among quantized tensors (display only; llama.cpp never reads it for loading).
int guess_ftype(const std::vector<GgmlType>& types, const std::vector<int64_t>& bytes);

}  // namespace samq::plan
