// `samq analyze` as a library: calibration chunks -> sensitivity statistics (analyze/fisher.h)
// -> per (tensor, candidate type) predicted Δloss and bytes (analyze/predict.h) ->
// sensitivity.json (schema samq.sensitivity/1, docs/artifacts.md), the importance matrix, and
// an SVG heat map.
//
// Default signal: the model Fisher (labels drawn from the model's own predictions) in the form
// chosen by --fisher (full by default; factored scales to big models). Every other signal is
// written beside it under each candidate's "signals" so they can be compared
// (tests/analyze/slow_prediction.cpp).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "analyze/calibration.h"
#include "analyze/fisher.h"
#include "analyze/imatrix.h"
#include "analyze/predict.h"
#include "backend/ops.h"
#include "backend/ops_backward.h"
#include "model/model.h"

namespace samq {

struct AnalyzeOptions {
  bool full = true;                 // --fisher full|factored
  int labels = kModelLabels;        // --labels model|empirical
  uint64_t seed = 0x5a3d;
  int64_t loss_from = 0;
  bool progress = true;
  // >= 0: the candidates' quantizer round trips run on that CUDA device (analyze/predict.h);
  // -1: on the CPU.
  int predict_device = -1;
};

// What the caller knows about the model file (tools/cmd_analyze.cpp fills it from
// export/source_model.h); anything left empty is derived from the Model.
struct ModelIdentity {
  std::string path, sha256, architecture;
  int64_t gguf_overhead_bytes = 0;
  std::vector<std::string> tensor_order;            // GGUF file order (all tensors)
  std::map<std::string, std::string> source_types;  // name -> ggml type name of the source
};

struct AnalysisResult {
  nlohmann::json doc;  // sensitivity.json
  Imatrix imatrix;
  double seconds = 0, tokens_per_second = 0, mean_loss = 0;
  // Streamed: seconds spent in the per-candidate predictions (quantizer round trips), and how
  // long the pass waited for them (the queue was full; 0 on the CPU, where they run inline).
  double predict_seconds = 0, predict_wait_seconds = 0;
};

// The forward and backward passes run on bops' backend (the model's weights prepared for it).
AnalysisResult analyze_model(const Model& m, const BackwardOps& bops, const Calibration& calib,
                             const ModelIdentity& id, const AnalyzeOptions& opt);

// The same analysis, layer-streamed (analyze/layer_stream.h): m loaded with prepare_layers =
// false; each tensor's predictions are made as soon as its layer is done. Same document, bit for
// bit, as analyze_model (apart from the timing fields and calibration.streamed).
AnalysisResult analyze_model_streamed(Model& m, const BackwardOps& bops, const Calibration& calib,
                                      const ModelIdentity& id, const AnalyzeOptions& opt, const StreamOptions& so);

// Builds sensitivity.json from a finished accumulator (used by analyze_model and by tests
// that reuse one accumulator for several reports).
nlohmann::json sensitivity_json(const Model& m, const SensitivityAccumulator& acc, const Calibration& calib,
                                const ModelIdentity& id, const AnalyzeOptions& opt, bool progress);
// One tensor's entry of sensitivity.json (its statistics final).
nlohmann::json tensor_json(const Model& m, const SensitivityAccumulator& acc, const TensorStats& s,
                           const ModelIdentity& id, const AnalyzeOptions& opt);

// Heat map of predicted Δloss at Q4_K, layer (rows) x tensor kind (columns), log colour scale.
std::string sensitivity_svg(const nlohmann::json& doc);

// Which predicted-Δloss signal is the default for these options ("fisher_model_full", ...).
int default_signal(const AnalyzeOptions& opt);

}  // namespace samq
