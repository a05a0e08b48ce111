// samq quantize: MODEL + plan.json -> mixed-precision GGUF.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "analyze/calibration.h"
#include "analyze/hessian_stream.h"
#include "analyze/layer_stream.h"
#include "backend/ops.h"
#include "calibration_options.h"
#include "command.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/sha256.h"
#include "device_option.h"
#include "export/quantize_model.h"
#include "export/source_model.h"
#include "plan/plan.h"

namespace samq::cli {
namespace {

struct QuantizeArgs {
  std::string model, plan, output, imatrix, hessian, calib;
  int64_t ctx = 512, tokens = 65536;
  double damp = 0.01;
  DeviceOption device;
};

// Without --imatrix: the importance matrix that samq analyze named in the plan's sensitivity.json
// (plan.json -> sensitivity.path -> imatrix.path), if it is there and unchanged (sha256). Says on
// stderr which one is used, or why none is (then rounding is not importance-weighted).
std::string imatrix_from_plan(const plan::Plan& p) {
  auto none = [](const std::string& why) {
    std::fprintf(stderr, "samq quantize: no importance matrix (%s): plain rounding, not importance-weighted; "
                         "give --imatrix FILE to use one\n", why.c_str());
    return std::string();
  };
  if (p.sensitivity_path.empty()) return none("the plan names no sensitivity report");
  std::error_code ec;
  if (!std::filesystem::exists(p.sensitivity_path, ec))
    return none(fmt::format("the plan's sensitivity report {} is not there", p.sensitivity_path));
  nlohmann::json s;
  try {
    s = nlohmann::json::parse(read_file(p.sensitivity_path));
  } catch (const std::exception& e) {
    return none(fmt::format("cannot read the plan's sensitivity report {}: {}", p.sensitivity_path, e.what()));
  }
  if (!s.contains("imatrix") || !s["imatrix"].is_object())
    return none(fmt::format("{} names none: samq analyze ran without --imatrix-out", p.sensitivity_path));
  const std::string path = s["imatrix"].value("path", ""), sha = s["imatrix"].value("sha256", "");
  if (path.empty() || !std::filesystem::exists(path, ec))
    return none(fmt::format("{}, named by {}, is not there", path, p.sensitivity_path));
  if (!sha.empty() && sha256_file_hex(path) != sha)
    return none(fmt::format("{} changed since samq analyze wrote it (sha256 differs)", path));
  std::fprintf(stderr, "samq quantize: importance matrix %s (named by %s)\n", path.c_str(), p.sensitivity_path.c_str());
  return path;
}

std::function<int()> setup(CLI::App& sub) {
  auto a = std::make_shared<QuantizeArgs>();
  sub.add_option("model", a->model, "Source model: a GGUF file or a Hugging Face directory")->required();
  sub.add_option("plan", a->plan, "plan.json written by samq plan")->required()->check(CLI::ExistingFile);
  sub.add_option("-o,--output", a->output, "GGUF file to write")->required();
  sub.add_option("--imatrix", a->imatrix, "Importance matrix (llama.cpp GGUF imatrix) for weighted quantization (default: the one samq analyze "
                 "named in the plan's sensitivity.json, if any)")
      ->check(CLI::ExistingFile);
  sub.add_option("--hessian", a->hessian,
                 "Input Hessians (samq hessian): GPTQ for every weight that has one (the rest as without)")
      ->check(CLI::ExistingFile);
  sub.add_option("--calib", a->calib,
                 "GPTQ with input Hessians computed here from this calibration text, one layer at a time "
                 "(instead of a --hessian file; the same values as samq hessian on the same tokens)")
      ->check(CLI::ExistingFile);
  sub.add_option("--ctx", a->ctx, "With --calib: tokens per calibration chunk")->capture_default_str();
  sub.add_option("--tokens", a->tokens, "With --calib: calibration tokens to use")->capture_default_str();
  sub.add_option("--gptq-damp", a->damp, "GPTQ dampening: lambda = damp * mean(diag H)")->capture_default_str();
  a->device.declare(sub, "Where GPTQ (--hessian) runs");
  return [a]() {
    // Only GPTQ (--hessian) runs on --device (export/quantize_model.h: gptq_device, which opens it);
    // ggml's quantizers run on the CPU.
    const int cuda_index = a->device.cuda_index();
    const std::string device = cuda_index < 0 ? "cpu" : "cuda:" + std::to_string(cuda_index);
    if (!a->hessian.empty() && !a->calib.empty()) fail("--hessian and --calib: give one source of Hessians");
    if (!a->calib.empty())
      std::fprintf(stderr, "samq quantize: %s with %s -> %s, GPTQ with Hessians streamed from %s, device %s\n",
                   a->model.c_str(), a->plan.c_str(), a->output.c_str(), a->calib.c_str(), device.c_str());
    else if (a->hessian.empty())
      std::fprintf(stderr,
                   "samq quantize: %s with %s -> %s, device cpu; no --hessian: no GPTQ (run samq hessian MODEL --calib "
                   "FILE -o H.gguf and pass --hessian H.gguf for it)\n",
                   a->model.c_str(), a->plan.c_str(), a->output.c_str());
    else
      std::fprintf(stderr, "samq quantize: %s with %s -> %s, GPTQ on device %s\n", a->model.c_str(), a->plan.c_str(),
                   a->output.c_str(), device.c_str());
    const plan::Plan p = plan::read_plan(a->plan);
    std::string imatrix = a->imatrix;
    if (imatrix.empty()) imatrix = imatrix_from_plan(p);
    auto src = open_source_model(a->model);
    if (!p.model_sha256.empty() && p.model_sha256 != "synthetic" && p.model_sha256 != src->identity_sha256())
      std::fprintf(stderr, "warning: %s was planned for a model with sha256 %s; this one is %s\n", a->plan.c_str(),
                   p.model_sha256.c_str(), src->identity_sha256().c_str());
    QuantizeOptions o;
    o.imatrix_path = imatrix;
    o.hessian_path = a->hessian;
    o.gptq_damp = a->damp;
    o.gptq_device = cuda_index;
    std::unique_ptr<StreamedHessians> streamed;
    std::shared_ptr<Model> m;
    Backend be;
    if (!a->calib.empty()) {
      be = a->device.resolve();
      m = Model::load(a->model, *be.ops, /*prepare_layers=*/false);
      const Tokenizer tok = model_tokenizer(a->model, *m);
      const Calibration calib = load_calibration(a->calib, tok, a->ctx, a->tokens);
      streamed = std::make_unique<StreamedHessians>(*m, *be.grad, calib.chunks, calib.sha256);
      o.hessians = streamed.get();
    }
    const QuantizeResult r = quantize_model(*src, p, a->output, o);
    if (streamed) {
      const Ops::MemoryInfo dev = be.ops->memory_info(), host = cpu_ops().memory_info();
      std::fprintf(stderr, "samq quantize: Hessians %.1f s, %d layer passes; peak memory: device %s, host RSS %s\n",
                   streamed->seconds(), streamed->layers_computed(), be.ops->host_memory() ? "-" : format_bytes(dev.peak_used).c_str(), format_bytes(host.peak_used).c_str());
    }
    if (r.n_with_hessian > 0)
      std::fprintf(stderr, "samq quantize: GPTQ %.1f s in all%s\n", r.gptq_seconds,
                   o.gptq_device >= 0 ? fmt::format(" (on the GPU: inverse factors {:.1f} s, uploads {:.1f} s, host in-batch steps {:.1f} s)",
                                                    r.gptq_inverse_seconds, r.gptq_transfer_seconds, r.gptq_host_step_seconds).c_str()
                                      : "");
    std::fprintf(stderr, "wrote %s: %lld bytes (%.3f MB), %.4f bits/weight, in %.2f s%s%s\n", a->output.c_str(),
                 (long long)r.file_bytes, double(r.file_bytes) / 1e6, p.bpw, r.seconds,
                 imatrix.empty() ? "" : fmt::format(", imatrix on {} tensors", r.n_with_imatrix).c_str(),
                 a->hessian.empty() && a->calib.empty() ? "" : fmt::format(", GPTQ on {} tensors", r.n_with_hessian).c_str());
    if (r.file_bytes != r.predicted_bytes)
      std::fprintf(stderr,
                   "warning: the plan predicted %lld bytes (%+lld): its sensitivity report's gguf_overhead_bytes was "
                   "not computed for this model's metadata (expected %lld)\n",
                   (long long)r.predicted_bytes, (long long)(r.file_bytes - r.predicted_bytes),
                   (long long)gguf_overhead_bytes(*src));
    return 0;
  };
}
}  // namespace

SAMQ_COMMAND(quantize, 45, "Write the mixed-precision GGUF a plan describes: MODEL plan.json -o out.gguf", setup);

}  // namespace samq::cli
