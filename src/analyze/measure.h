// Measured sensitivity, the ground truth the predictions are checked against: replace one
// weight tensor (in memory) by its quantize->dequantize round trip and measure the mean KL
// divergence to the unquantized model exactly as `samq eval` / llama-perplexity do
// (eval/perplexity.h: chunks of ctx tokens with BOS first, second half scored, base
// distributions in llama.cpp's compressed form).
//
// Cost control: the base run records, per chunk, the residual entering every layer; a tensor
// of layer l is then measured by running only layers l.. from that saved input
// (ForwardOptions::start_layer), and the output head from the final residual.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/ops.h"
#include "eval/logits_codec.h"
#include "model/model.h"

namespace samq {

class SingleTensorKld {
 public:
  // chunks: eval chunks (ctx tokens each, BOS first). Runs the base model once.
  SingleTensorKld(Model& m, const Ops& ops, std::vector<std::vector<int32_t>> chunks, bool progress = true);

  struct Result {
    double kld_mean = 0, same_top_pct = 0, dnll = 0;  // dnll: mean NLL(q) - NLL(base)
  };
  // Replaces `name` by its round trip through `type` (imatrix per column or null), measures,
  // restores the tensor.
  Result measure(const std::string& name, GgmlType type, const float* imatrix);
  double base_nll() const { return base_nll_; }
  int64_t n_scored() const;

 private:
  Result run_from(int start_layer);
  Model& m_;
  const Ops& ops_;
  std::vector<std::vector<int32_t>> chunks_;
  int64_t ctx_ = 0;
  std::vector<std::vector<std::vector<float>>> inputs_;  // [chunk][layer 0..n_layer] residuals
  std::vector<std::vector<TokenDist>> base_;             // [chunk][scored position]
  double base_nll_ = 0;
};

// Start layer needed when `name` changes: its layer, n_layer for output_norm/output, 0 else.
int measure_start_layer(const Model& m, const std::string& name);

}  // namespace samq
