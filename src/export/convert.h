// `samq convert`: an HF checkpoint (or a GGUF file) -> a GGUF file of one type, as llama.cpp's
// convert_hf_to_gguf.py writes it: same metadata, tensor names, order, dims and types (1-D
// tensors and norms stay F32; Q8_0 falls back to F16 for rows that are not a multiple of 32).
// Streams tensor by tensor: peak memory is about the largest tensor in f32 plus its output.
#pragma once
#include <cstdint>
#include <string>

#include "core/ggml_type.h"

namespace samq {

class SourceModel;

struct ConvertOptions {
  GgmlType type = GgmlType::BF16;  // f32, f16, bf16 or q8_0
  std::string name;                // general.name, written after general.type when not empty
};

struct ConvertResult {
  int64_t n_tensors = 0;
  uint64_t file_bytes = 0;
  uint64_t data_offset = 0;
};

// Writes `out_path` atomically (temp file + rename). Throws samq::Error naming the tensor.
ConvertResult convert_to_gguf(const SourceModel& src, const std::string& out_path, const ConvertOptions& opt);

// Converts n float32 values to `type` (F32, F16 or BF16, exact rounding as the converter;
// Q8_0 via the quant layer, rows of `cols`). dst holds the packed bytes.
void convert_f32_data(GgmlType type, const float* src, void* dst, int64_t rows, int64_t cols);

}  // namespace samq
