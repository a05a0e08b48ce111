// Where GPTQ (quant/gptq.h) gets each weight's input Hessian while a model is quantized
// (export/quantize_model.h): a file written by `samq hessian` (HessianFile), or a layer-streamed
// forward pass over calibration text that holds one layer's Hessians at a time
// (analyze/hessian_stream.h: StreamedHessians).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace samq {

class HessianSource {
 public:
  virtual ~HessianSource() = default;
  virtual bool has(const std::string& weight) const = 0;
  virtual int64_t cols(const std::string& weight) const = 0;
  // The mean Hessian H / count (n x n, f32, row-major) of the weight's input; empty if none.
  // May compute (a streamed source advances its pass to the weight's layer).
  virtual std::vector<float> mean(const std::string& weight) = 0;
  // The order in which weights are best asked for: ascending keys (a streamed source's layer;
  // a file has no preference). The quantizer visits tensors in that order, file order on ties.
  virtual int pass_order(const std::string& /*weight*/) const { return 0; }
  virtual std::string path() const = 0;    // for messages
  virtual std::string sha256() const = 0;  // recorded as the file's samq.hessian
};

}  // namespace samq
