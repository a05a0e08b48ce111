// What `samq analyze` and `samq hessian` share: the model and calibration-text options
// (MODEL, --calib, --ctx, --tokens) and loading the text as calibration chunks with the model's
// own tokenizer.
#pragma once
#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "analyze/calibration.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace samq::cli {

struct CalibrationOptions {
  std::string model, calib;
  int64_t ctx = 512;
  int64_t tokens = 65536;

  // Declares MODEL (positional), --calib, --ctx and --tokens on sub.
  void declare(CLI::App& sub);
  // The calibration chunks of --calib for m (the model loaded from `model`).
  Calibration load(const Model& m) const;
};

// The tokenizer of the model at path: its GGUF vocabulary, or the HF directory's tokenizer.
Tokenizer model_tokenizer(const std::string& path, const Model& m);

}  // namespace samq::cli
