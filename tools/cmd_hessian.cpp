// samq hessian MODEL --calib F -o H.gguf: input Hessians (sum of x x^T over calibration tokens) of
// every linear layer, for `samq quantize --hessian` (GPTQ, quant/gptq.h). Forward only.
#include <cstdio>
#include <memory>

#include "analyze/calibration.h"
#include "analyze/hessian.h"
#include "backend/ops.h"
#include "calibration_options.h"
#include "command.h"
#include "device_option.h"
#include "core/error.h"
#include "core/parallel.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace samq::cli {
namespace {

struct HessianArgs : CalibrationOptions {
  std::string out;
  DeviceOption device;
};

int run_hessian(const HessianArgs& a) {
  const Backend be = a.device.resolve();
  auto m = Model::load(a.model, *be.ops);
  const Calibration calib = a.load(*m);
  std::fprintf(stderr, "samq hessian: %s, %zu chunks of %lld tokens from %s, %d threads, device %s\n",
               a.model.c_str(), calib.chunks.size(), (long long)a.ctx, a.calib.c_str(), num_threads(), be.device.c_str());
  Hessians h = collect_hessians(*m, *be.grad, calib.chunks);
  h.calib_sha256 = calib.sha256;
  write_hessian_gguf(a.out, h);
  size_t weights = 0;
  for (const auto& e : h.entries) weights += e.serves.size();
  std::fprintf(stderr, "samq hessian: wrote %s (%zu inputs serving %zu weights, %lld tokens)\n", a.out.c_str(),
               h.entries.size(), weights, (long long)calib.n_tokens());
  return 0;
}

std::function<int()> setup(CLI::App& sub) {
  auto a = std::make_shared<HessianArgs>();
  a->declare(sub);
  a->device.declare(sub);
  sub.add_option("-o,--output", a->out, "Output Hessian file (GGUF, general.type samq.hessian)")->required();
  return [a] { return run_hessian(*a); };
}

}  // namespace

SAMQ_COMMAND(hessian, 32, "Collect each linear layer's input Hessian (sum x x^T) for GPTQ: MODEL --calib F -o H.gguf", setup);

}  // namespace samq::cli
