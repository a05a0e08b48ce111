// Input Hessians for GPTQ, one layer at a time (analyze/layer_stream.h), computed while a model is
// quantized instead of read from a `samq hessian` file: a forward pass over the calibration
// chunks advances layer by layer as the quantizer asks for weights (it asks in pass_order, so
// each layer is computed once; an HF checkpoint's file order is blk.0, blk.1, blk.10, ...), holding one residual per chunk in host memory and one layer's Hessians.
// The sums and means are the ones collect_hessians + HessianFile give, bit for bit
// (same per-chunk accumulation, same f32 rounding of the sum before dividing by the count).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "backend/ops_backward.h"
#include "model/model.h"
#include "quant/hessian_source.h"

namespace samq {

class StreamedHessians final : public HessianSource {
 public:
  // m loaded with prepare_layers = false (its layers are prepared and released here).
  StreamedHessians(Model& m, const BackwardOps& bops, std::vector<std::vector<int32_t>> chunks,
                   std::string calib_sha256, bool progress = true);
  bool has(const std::string& weight) const override;
  int64_t cols(const std::string& weight) const override;
  std::vector<float> mean(const std::string& weight) override;
  int pass_order(const std::string& weight) const override;  // the weight's layer (head: n_layer)
  int layers_computed() const { return layers_computed_; }    // forward layer passes so far
  std::string path() const override { return "(Hessians streamed from the calibration text)"; }
  std::string sha256() const override { return "stream:" + calib_sha256_; }
  double seconds() const { return seconds_; }  // spent in forward passes and accumulation

 private:
  void compute_layer(int layer);  // layer == n_layer: the output head's input
  void restart();

  Model& m_;
  const BackwardOps& bops_;
  std::vector<std::vector<int32_t>> chunks_;
  std::string calib_sha256_;
  bool progress_;
  std::map<std::string, std::pair<int, int64_t>> weights_;  // weight -> (layer, input columns)
  std::vector<std::vector<float>> x_;                        // residual entering layer next_, per chunk
  int next_ = 0;                                             // layer x_ enters
  int held_ = -1;                                            // layer whose means are held
  std::map<std::string, std::vector<float>> means_;          // weight -> mean Hessian (held layer)
  double seconds_ = 0;
  int layers_computed_ = 0;
};

}  // namespace samq
