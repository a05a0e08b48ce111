#!/usr/bin/env bash
# GPU tests: builds samq with the CUDA backend (-DSAMQ_CUDA=ON) and runs the ctest label `gpu`
# (tests/cuda/, one executable test_cuda). On this script a skipped test is a failure: the GPU
# tests skip themselves where no GPU is visible, and this script exists to run them on one.
#
#   scripts/gpu_test.sh [extra ctest args, e.g. -R CudaOps]
#
# Environment: SAMQ_BUILD_DIR (default: build-gpu/ in the repository), SAMQ_SHARED_DIR (default
# ../shared), SAMQ_CUDA_ARCHITECTURES (default 90: sm_90 code + compute_90 PTX; e.g. "80-real;90"
# for an A100 too), SAMQ_GPU_TEST_JOBS (build jobs, default: every core).
#
# What the machine needs (the configure step of the whole project, not only the GPU part):
# - an NVIDIA driver and GPU, nvcc (CUDA >= 12; the toolkit's cudart, cuBLAS, cuBLASLt and
#   cuSOLVER), cmake >= 3.25, ninja, a C++20 compiler with OpenMP (g++ >= 12), pkg-config;
# - the libraries CMakeLists.txt finds with REQUIRED (Debian 12 packages in parentheses):
#   nlohmann-json 3 (nlohmann-json3-dev), CLI11 (libcli11-dev), PCRE2 through pkg-config
#   libpcre2-8 (libpcre2-dev), BLAS (libopenblas-openmp-dev), cpp-httplib through pkg-config
#   (libcpp-httplib-dev, with libssl-dev), prometheus-cpp (prometheus-cpp-dev), zlib
#   (zlib1g-dev), fmt (libfmt-dev), GoogleTest (libgtest-dev, libgmock-dev);
#   scripts/setup.sh installs them all. Not needed here: Google Benchmark (found QUIET), clang
#   (the fuzz targets skip without it), node (only the `node` tests use it).
# Logs: the ctest output goes to BUILD/gpu-test.log and ctest's own log to
# BUILD/Testing/Temporary/LastTest.log; both paths are printed at the end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SAMQ_BUILD_DIR:-$root/build-gpu}"
jobs="${SAMQ_GPU_TEST_JOBS:-$(nproc)}"
arch="${SAMQ_CUDA_ARCHITECTURES:-90}"
log="$build/gpu-test.log"

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader || true
else
  echo "gpu_test.sh: warning: no nvidia-smi on PATH; the tests will tell whether a GPU is usable" >&2
fi

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSAMQ_CUDA=ON \
  -DSAMQ_CUDA_ARCHITECTURES="$arch" ${SAMQ_SHARED_DIR:+-DSAMQ_SHARED_DIR="$SAMQ_SHARED_DIR"}
# test_cuda (and the samq binary it depends on) only: the CPU suites are scripts/test.sh's job.
cmake --build "$build" -j "$jobs" --target test_cuda

cd "$build"
set +e
ctest -L gpu --output-on-failure --no-tests=error --timeout 1500 "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# ctest counts a GTEST_SKIP as "Skipped" (tests/CMakeLists.txt: SKIP_REGULAR_EXPRESSION), not as a
# failure; here no test may skip.
skipped=$(grep -c -E '\*\*\*Skipped|\(Skipped\)$' "$log" || true)
if [[ "$skipped" -gt 0 ]]; then
  echo "gpu_test.sh: FAIL: gpu tests were skipped (no usable GPU?):" >&2
  grep -E '\(Skipped\)$' "$log" >&2 || true
  rc=1
fi
echo "gpu_test.sh: logs: $log and $build/Testing/Temporary/LastTest.log"
if [[ "$rc" -ne 0 ]]; then
  echo "gpu_test.sh: FAILED (ctest exit code or skipped tests)" >&2
  exit 1
fi
echo "gpu_test.sh: all gpu tests passed"
