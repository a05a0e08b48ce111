// RAII owners of CUDA runtime resources for code that runs outside the op tables' Device (GPTQ,
// the analysis' round trips): device buffers, pinned host buffers, the current device, a stream,
// and a sync at scope exit; every failing call throws samq::Error naming it (SAMQ_CK).
//
// Include it first: fmt configures itself differently under nvcc (__NVCC__), which does not compile
// its consteval format strings; seen as the host compiler it works, with the configuration of the
// rest of samq (as cuda_common.cuh does).
#pragma once
#pragma push_macro("__NVCC__")
#undef __NVCC__
#include <fmt/format.h>

#include "core/error.h"
#pragma pop_macro("__NVCC__")

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

namespace samq::cuda_owners {

// ---------------------------------------------------------------------------------------------
// Status checks: every failing call is named in the error.

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("CUDA: {} failed: {} ({})", what, cudaGetErrorString(e), int(e));
}

#define SAMQ_CK(call) check((call), #call)

// Errors of kernel launches (configuration) surface at once; execution errors at the next sync.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

// ---------------------------------------------------------------------------------------------
// Owners (no leaks when a check throws).

template <typename T>
class DevBuf {
 public:
  DevBuf() = default;
  explicit DevBuf(size_t count) : n_(count) {
    if (count == 0) return;
    const cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&p_), count * sizeof(T));
    if (e != cudaSuccess) {
      p_ = nullptr;
      fail("CUDA: cudaMalloc of {} bytes failed: {} ({})", count * sizeof(T), cudaGetErrorString(e), int(e));
    }
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  DevBuf(DevBuf&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DevBuf& operator=(DevBuf&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  ~DevBuf() { reset(); }
  void reset() {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

template <typename T>
class PinnedBuf {
 public:
  explicit PinnedBuf(size_t count) {
    if (count == 0) return;
    const cudaError_t e = cudaMallocHost(reinterpret_cast<void**>(&p_), count * sizeof(T));
    if (e != cudaSuccess) {
      p_ = nullptr;
      fail("CUDA: cudaMallocHost of {} bytes failed: {} ({})", count * sizeof(T), cudaGetErrorString(e),
           int(e));
    }
  }
  PinnedBuf(const PinnedBuf&) = delete;
  PinnedBuf& operator=(const PinnedBuf&) = delete;
  ~PinnedBuf() {
    if (p_) cudaFreeHost(p_);
  }
  T* get() const { return p_; }

 private:
  T* p_ = nullptr;
};

// Makes `device` current for the scope (after checking that it exists) and restores the caller's.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) fail("cuda:{} is not available: {} ({})", device, cudaGetErrorString(e), int(e));
    if (device < 0 || device >= count) fail("cuda:{} does not exist ({} CUDA devices)", device, count);
    SAMQ_CK(cudaGetDevice(&prev_));
    SAMQ_CK(cudaSetDevice(device));
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
  ~DeviceScope() { cudaSetDevice(prev_); }

 private:
  int prev_ = 0;
};

class Stream {
 public:
  Stream() { SAMQ_CK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() {
    cudaStreamSynchronize(s_);
    cudaStreamDestroy(s_);
  }
  cudaStream_t get() const { return s_; }
  void sync() const { SAMQ_CK(cudaStreamSynchronize(s_)); }

 private:
  cudaStream_t s_ = nullptr;
};

// Waits for the stream when the scope ends (also by an exception), before the buffers that
// in-flight work uses are freed: declare it after them.
class SyncAtExit {
 public:
  explicit SyncAtExit(cudaStream_t s) : s_(s) {}
  SyncAtExit(const SyncAtExit&) = delete;
  SyncAtExit& operator=(const SyncAtExit&) = delete;
  ~SyncAtExit() { cudaStreamSynchronize(s_); }

 private:
  cudaStream_t s_;
};

}  // namespace samq::cuda_owners
