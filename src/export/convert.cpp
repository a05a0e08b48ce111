// HF -> GGUF conversion (see convert.h).
#include "export/convert.h"

#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "export/source_model.h"
#include "format/gguf.h"
#include "quant/quantize.h"

namespace samq {

void convert_f32_data(GgmlType type, const float* src, void* dst, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, size_t(n) * sizeof(float));
      return;
    case GgmlType::F16: {
      auto* d = static_cast<uint16_t*>(dst);
      parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) d[i] = f32_to_fp16(src[i]);
      });
      return;
    }
    case GgmlType::BF16: {
      auto* d = static_cast<uint16_t*>(dst);
      parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) d[i] = f32_to_bf16(src[i]);
      });
      return;
    }
    default:
      if (!quant_supported(type)) fail("convert: output type {} is not supported", ggml_type_name(type));
      quantize_tensor(type, src, dst, rows, cols, nullptr);
  }
}

ConvertResult convert_to_gguf(const SourceModel& src, const std::string& out_path, const ConvertOptions& opt) {
  const GgmlType t = opt.type;
  if (t != GgmlType::F32 && t != GgmlType::F16 && t != GgmlType::BF16 && t != GgmlType::Q8_0)
    fail("convert: --type must be f32, f16, bf16 or q8_0, not {}", ggml_type_name(t));

  GgufWriter w(out_path);
  for (const GgufValue& v : src.metadata()) {
    w.set(v.key(), v);
    if (v.key() == "general.type" && !opt.name.empty()) w.set_str("general.name", opt.name);
  }
  w.set_u32("general.file_type", llama_ftype_of(t));

  std::vector<GgmlType> types;
  uint64_t total = 0;
  int64_t max_elems = 0;
  for (const SourceTensor& st : src.tensors()) {
    const GgmlType tt = convert_tensor_type(st, t);
    types.push_back(tt);
    const int64_t ne[4] = {st.ne[0], st.ne[1], st.ne[2], st.ne[3]};
    w.add_tensor_info(st.name, tt, std::span<const int64_t>(ne, st.n_dims));
    total += uint64_t(st.n_elements());
    max_elems = std::max(max_elems, st.n_elements());
  }
  w.write_header();

  std::vector<float> buf(static_cast<size_t>(max_elems));
  std::vector<uint8_t> out;
  Progress prog("convert", int64_t(total), "weights");
  for (size_t i = 0; i < src.tensors().size(); ++i) {
    const SourceTensor& st = src.tensors()[i];
    const size_t nbytes = size_t(st.rows() * ggml_row_size(types[i], st.cols()));
    out.resize(nbytes);
    try {
      src.read_f32(i, buf.data());
      convert_f32_data(types[i], buf.data(), out.data(), st.rows(), st.cols());
    } catch (const Error& e) {
      fail("tensor '{}': {}", st.name, e.what());
    }
    w.write_tensor_data(i, out.data(), nbytes);
    prog.add(st.n_elements());
  }
  prog.finish();
  ConvertResult r;
  r.n_tensors = int64_t(src.tensors().size());
  r.data_offset = w.header_bytes();
  r.file_bytes = w.file_bytes();
  w.finish();
  return r;
}

}  // namespace samq
