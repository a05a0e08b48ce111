// llama.cpp's file-type ids (llama_ftype, written as general.file_type) by the base type of a
// file: the id of the preset whose default type is t (Q3_K -> Q3_K_M, Q4_K -> Q4_K_M,
// Q5_K -> Q5_K_M), or nullopt for a type no llama_ftype is named after.
#pragma once
#include <cstdint>
#include <optional>

#include "core/ggml_type.h"

namespace samq {

inline std::optional<uint32_t> llama_ftype_for(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return 0;
    case GgmlType::F16: return 1;
    case GgmlType::Q4_0: return 2;
    case GgmlType::Q4_1: return 3;
    case GgmlType::Q8_0: return 7;
    case GgmlType::Q5_0: return 8;
    case GgmlType::Q5_1: return 9;
    case GgmlType::Q2_K: return 10;
    case GgmlType::Q3_K: return 12;  // Q3_K_M
    case GgmlType::Q4_K: return 15;  // Q4_K_M
    case GgmlType::Q5_K: return 17;  // Q5_K_M
    case GgmlType::Q6_K: return 18;
    case GgmlType::IQ4_NL: return 25;
    case GgmlType::IQ4_XS: return 30;
    case GgmlType::BF16: return 32;
    default: return std::nullopt;
  }
}

}  // namespace samq
