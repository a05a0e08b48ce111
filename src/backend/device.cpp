// Device selection (backend/device.h): `--device cpu|cuda[:N]` to the op tables of one backend.
#include "backend/device.h"

#include <charconv>

#include "core/error.h"

#ifdef SAMQ_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace samq {

namespace {

constexpr const char* kKnown = "cpu, cuda, cuda:N";

// "cuda" -> 0, "cuda:N" -> N; -1 when spec is not a CUDA spec at all.
int cuda_index(const std::string& spec) {
  if (spec == "cuda") return 0;
  if (spec.rfind("cuda:", 0) != 0) return -1;
  const char* b = spec.data() + 5;
  const char* e = spec.data() + spec.size();
  int n = -1;
  const auto [p, ec] = std::from_chars(b, e, n);
  if (b == e || ec != std::errc() || p != e || n < 0) return -1;
  return n;
}

}  // namespace

bool cuda_built() {
#ifdef SAMQ_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

Backend cpu_backend() { return {&cpu_ops(), &cpu_backward_ops(), cpu_ops().device()}; }

Backend select_backend(const std::string& spec) {
  if (spec.empty() || spec == "auto") {
#ifdef SAMQ_HAVE_CUDA
    if (cuda_device_count() > 0) return select_backend("cuda:0");
#endif
    return cpu_backend();
  }
  if (spec == "cpu") return cpu_backend();
  const int index = cuda_index(spec);
  if (index < 0) fail("--device: unknown device '{}' ({})", spec, kKnown);
#ifdef SAMQ_HAVE_CUDA
  const int n = cuda_device_count();
  if (n == 0) fail("--device {}: no CUDA device is visible (no GPU, no driver, or CUDA_VISIBLE_DEVICES hides them)", spec);
  if (index >= n) fail("--device {}: only {} CUDA device{}", spec, n, n == 1 ? "" : "s");
  const Ops& ops = cuda_ops(index);
  return {&ops, &cuda_backward_ops(index), ops.device()};
#else
  fail("--device {}: samq was built without CUDA (configure with -DSAMQ_CUDA=ON where nvcc exists)", spec);
#endif
}

}  // namespace samq
