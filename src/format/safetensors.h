// safetensors reader: one file, or a sharded checkpoint described by
// model.safetensors.index.json. Files are memory-mapped; tensors are views into the maps.
//
// Format: u64 LE header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[b,e]},
// "__metadata__": {str: str}}, then the data buffer (offsets relative to its start).
// The header parse is bounds-checked: N within the file, valid JSON object, offsets
// begin <= end within the buffer, end - begin == product(shape) * dtype size, no overlaps.
// Only F32, F16 and BF16 are supported; any other dtype is an error naming tensor and file.
//
// Shapes are in PyTorch order: (rows, cols) = (out_features, in_features) for 2-D weights.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.h"

namespace samq {

enum class StDtype { F32, F16, BF16 };
std::string_view st_dtype_name(StDtype d);  // "F32", "F16", "BF16" (safetensors spelling)
size_t st_dtype_size(StDtype d);

struct StTensorView {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;  // PyTorch order; empty for a scalar
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
  std::string file;  // the .safetensors file holding it (for messages)

  int64_t n_elements() const;
  int64_t cols() const;  // last dim (1 for a scalar)
  int64_t rows() const;  // product of the other dims
};

// Converts the whole tensor (n_elements floats) / one row (cols floats) to float32, exactly.
void to_f32(const StTensorView& t, float* out);
void row_to_f32(const StTensorView& t, int64_t row, float* out);

// Parses one safetensors image the caller keeps alive; `file` names it in errors. Tensors are
// returned in data-offset order. Throws samq::Error on any malformation.
std::vector<StTensorView> parse_safetensors(const uint8_t* data, size_t size, const std::string& file,
                                            std::map<std::string, std::string>* metadata = nullptr);

class SafetensorsModel {
 public:
  // `path` may be a .safetensors file, a model.safetensors.index.json, or a directory holding
  // either model.safetensors.index.json or model.safetensors.
  static SafetensorsModel open(const std::string& path);

  // Tensors of all shards: shards in index order (sorted file names), each in data order.
  const std::vector<StTensorView>& tensors() const { return tensors_; }
  const StTensorView* find(std::string_view name) const;  // nullptr if absent
  const StTensorView& get(std::string_view name) const;   // throws naming the tensor
  const std::map<std::string, std::string>& metadata() const { return metadata_; }  // merged __metadata__
  const std::vector<std::string>& files() const { return files_; }
  uint64_t total_bytes() const;  // sum of tensor bytes

 private:
  std::vector<std::unique_ptr<MappedFile>> maps_;
  std::vector<std::string> files_;
  std::vector<StTensorView> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace samq
