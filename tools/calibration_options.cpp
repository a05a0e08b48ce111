// Model and calibration options of `samq analyze` and `samq hessian` (calibration_options.h).
#include "calibration_options.h"

namespace samq::cli {

void CalibrationOptions::declare(CLI::App& sub) {
  sub.add_option("model", model, "Model: HF directory or GGUF (F32/F16/BF16)")->required();
  sub.add_option("--calib", calib, "Calibration text (UTF-8)")->required();
  sub.add_option("--ctx", ctx, "Tokens per calibration chunk")->capture_default_str();
  sub.add_option("--tokens", tokens, "Calibration tokens to use (whole chunks; <= 0: the whole file)")
      ->capture_default_str();
}

Calibration CalibrationOptions::load(const Model& m) const {
  return load_calibration(calib, model_tokenizer(model, m), ctx, tokens);
}

Tokenizer model_tokenizer(const std::string& path, const Model& m) {
  return m.gguf ? Tokenizer::from_gguf(*m.gguf) : Tokenizer::from_hf_dir(path, m.hparams.n_vocab);
}

}  // namespace samq::cli
