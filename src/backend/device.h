// Choosing where the heavy stages run: `--device cpu|cuda[:N]` (default: cuda:0 when a GPU is
// present and samq was built with CUDA, else cpu).
//
//   Backend be = select_backend(args.device);   // "" = the default
//   Model::load(path, *be.ops);                 // weights prepared for that backend
//   analyze_model(*m, be, ...);
#pragma once
#include <string>

#include "backend/ops.h"
#include "backend/ops_backward.h"

namespace samq {

struct Backend {
  const Ops* ops = nullptr;
  const BackwardOps* grad = nullptr;
  std::string device;  // "cpu", "cuda:0 (NVIDIA H200)": recorded in every artifact and report
};

// spec: "", "auto", "cpu", "cuda", "cuda:N". Throws samq::Error naming the spec when the device
// does not exist or samq was built without CUDA.
Backend select_backend(const std::string& spec);
Backend cpu_backend();
// True when samq was built with the CUDA backend.
bool cuda_built();

}  // namespace samq
