// Apply a plan: quantize a source model (GGUF file or HF dir, via source_model.h) tensor by
// tensor into a mixed-precision GGUF that llama.cpp loads as is.
//
// Streaming: one source tensor is converted to f32 and quantized (multithreaded over rows,
// quant/quantize.h) at a time, so peak memory is about the largest tensor in f32 plus its
// quantized bytes. Metadata: the source's keys (general.file_type and
// general.quantization_version updated in place when present; old samq.* keys dropped), then
// the plan's block (samq.version, samq.imatrix, samq.plan; plan/plan.h). Output goes through GgufWriter (temp file + rename).
// The file's size equals plan.file_bytes whenever the plan's overhead_bytes was computed for
// this source (gguf_overhead_bytes() below); a mismatch is reported in the result.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "export/source_model.h"
#include "quant/hessian_source.h"
#include "plan/plan.h"

namespace samq {

// Per-column importance (mean of x^2) by weight name, read from a llama.cpp GGUF imatrix
// (ggml-formats.md §5.2/§5.4: in_sum2 / counts). Errors name the file and tensor.
struct ImportanceMatrix {
  std::string path, sha256;
  std::unordered_map<std::string, std::vector<float>> values;
  const std::vector<float>* find(const std::string& name) const;
};
ImportanceMatrix load_importance_matrix(const std::string& path);

// Input Hessians written by `samq hessian` (format: analyze/hessian.h, docs/artifacts.md).
class GgufFile;
// Maps weight names to entries without copying the matrices (the file stays mapped).
class HessianFile final : public HessianSource {
 public:
  static HessianFile open(const std::string& path);  // errors name the file and tensor
  HessianFile(HessianFile&&) noexcept;
  HessianFile& operator=(HessianFile&&) noexcept;
  ~HessianFile();
  std::string path() const override { return path_; }
  std::string sha256() const override { return sha256_; }
  bool has(const std::string& weight) const override { return entry_of_.count(weight) != 0; }
  // The mean Hessian H / count (n x n, f32) for `weight`; empty if none.
  std::vector<float> mean(const std::string& weight) const;
  std::vector<float> mean(const std::string& weight) override { return std::as_const(*this).mean(weight); }
  int64_t cols(const std::string& weight) const override;
  size_t size() const { return entry_of_.size(); }

 private:
  HessianFile() = default;
  std::string path_, sha256_;
  std::unique_ptr<GgufFile> file_;
  std::map<std::string, std::string> entry_of_;  // weight -> entry name
};


// Bytes before the tensor data of the file samq quantize writes for `src`, without the plan's
// metadata block (which is always a multiple of 32 bytes): sensitivity.json's
// gguf_overhead_bytes (samq analyze computes the same: all source keys + tensor infos).
int64_t gguf_overhead_bytes(const SourceModel& src);

struct QuantizeOptions {
  std::string imatrix_path;  // optional
  // Optional Hessian file (samq hessian, analyze/hessian.h): every weight with a Hessian entry is
  // quantized by GPTQ (quant/gptq.h) instead of ggml's quantizer; the rest (e.g. token_embd)
  // as before. Recorded as metadata key samq.hessian (the file's sha256).
  std::string hessian_path;
  // Or any other source of the Hessians (e.g. analyze/hessian_stream.h), used when set.
  HessianSource* hessians = nullptr;
  double gptq_damp = 0.01;
  // Where GPTQ runs: -1 the CPU; N >= 0 cuda:N (backend/cuda/gptq_cuda.h: same algorithm and, up to
  // rounding differences of the inverse Hessian factor, the same bytes). A build without CUDA fails
  // with "built without CUDA" when GPTQ would run on a GPU.
  int gptq_device = -1;
  bool progress = true;
};

struct QuantizeResult {
  int64_t file_bytes = 0;
  int64_t predicted_bytes = 0;
  int64_t header_bytes = 0;
  double seconds = 0;
  int n_with_imatrix = 0;
  int n_with_hessian = 0;
  // GPTQ (tensors with a Hessian): seconds in gptq_quantize_tensor[_cuda] in all, and on a GPU its
  // phases summed over tensors (backend/cuda/gptq_cuda.h GptqCudaTimings).
  double gptq_seconds = 0, gptq_inverse_seconds = 0, gptq_transfer_seconds = 0, gptq_host_step_seconds = 0;
};

// Checks that the plan covers exactly the source's tensors (names, and bytes against shapes),
// then writes `out_path`.
QuantizeResult quantize_model(const SourceModel& src, const plan::Plan& plan, const std::string& out_path,
                              const QuantizeOptions& opt = {});

}  // namespace samq
