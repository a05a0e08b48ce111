// `--device cpu|cuda[:N]`, as every command that runs the model declares it (analyze, hessian,
// quantize, eval, generate, run): one place for the option, its help text and its resolution
// through backend/device.h.
//
//   DeviceOption dev;  dev.declare(sub);          // in the command's setup
//   const Backend be = dev.resolve();              // in its run function: opens the device
//   fprintf(stderr, "samq eval: ..., device %s\n", be.device.c_str());
#pragma once
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "backend/device.h"

namespace samq::cli {

struct DeviceOption {
  std::string spec;  // as given; "" = the default (auto)

  // Declares --device on sub; its help: `what`, the choices and this build's default.
  void declare(CLI::App& sub, const std::string& what = "Where the model runs");
  // The backend --device names (select_backend): opens the device. Errors name the spec.
  Backend resolve() const;
  // What resolve() would choose, "cpu" or "cuda:N", without opening a device (for `samq run`,
  // whose stages resolve it themselves); the same errors as resolve() for specs that cannot work.
  std::string preview() const;
  // preview() as an index: -1 for the CPU, N for cuda:N (export/quantize_model.h: gptq_device).
  int cuda_index() const;
  // The option for a child `samq` command: {"--device", spec}, or {} for the default.
  std::vector<std::string> args() const;
};

// The help text of --device in this build ("WHAT: cpu, cuda ... (default: ...)").
std::string device_option_help(const std::string& what);

}  // namespace samq::cli
