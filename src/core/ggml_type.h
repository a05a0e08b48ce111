// The ggml tensor types: ids, names, block sizes and bytes per block, declared once
// (ggml-formats.md §2.1). Everything else (GGUF validation, the planner's byte counts, the
// quantizers) reads sizes from here.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace samq {

enum class GgmlType : int32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

struct GgmlTypeInfo {
  GgmlType type;
  const char* name;    // ggml spelling: "q4_K", "bf16"
  int64_t block_size;  // elements per block
  int64_t type_size;   // bytes per block
  bool storage;        // may appear in a model file (Q8_K, Q8_1 are activation-only)
};

// nullptr for ids ggml does not know (removed ids 4, 5, 31-33, 36-38, and >= 40).
const GgmlTypeInfo* ggml_type_info(int32_t id);
const GgmlTypeInfo& ggml_type_info(GgmlType t);
std::string_view ggml_type_name(GgmlType t);
// Accepts ggml spellings case-insensitively ("Q4_K", "q4_k", "bf16").
std::optional<GgmlType> ggml_type_from_name(std::string_view name);

// Bytes of one row of n elements; throws samq::Error when n is not a multiple of the block.
int64_t ggml_row_size(GgmlType t, int64_t n);
inline double ggml_bits_per_weight(GgmlType t) {
  const auto& i = ggml_type_info(t);
  return 8.0 * double(i.type_size) / double(i.block_size);
}

}  // namespace samq
