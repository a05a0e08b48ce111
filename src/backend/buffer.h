// Buffer<T>: n elements of T in a backend's memory (backend/ops.h), owned, move-only. Model and
// analysis code hold activations, caches and accumulators in these and pass data() to ops; only
// the backend touches the bytes. On the CPU backends this is plain host memory.
//
//   Buffer<float> x(ops, n * d);      // uninitialized
//   x.zero();  ops.rms_norm(x.data(), ...);
//   std::vector<float> h = x.to_host();
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "backend/ops.h"

namespace samq {

template <class T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Ops& ops, int64_t n) : ops_(&ops) { grow(n); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    Buffer t(std::move(o));
    swap(t);
    return *this;
  }
  ~Buffer() {
    if (p_) ops_->release(p_);
  }

  // Capacity at least n (contents are lost when it grows); binds the buffer to ops first.
  T* reserve(const Ops& ops, int64_t n) {
    if (ops_ != &ops) {
      *this = Buffer();
      ops_ = &ops;
    }
    grow(n);
    return p_;
  }
  T* data() { return p_; }
  const T* data() const { return p_; }
  int64_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  const Ops* ops() const { return ops_; }

  void zero() {
    if (n_) ops_->zero(p_, bytes());
  }
  void upload(const T* src, int64_t n, int64_t at = 0) { ops_->upload(p_ + at, src, size_t(n) * sizeof(T)); }
  void download(T* dst, int64_t n, int64_t at = 0) const { ops_->download(dst, p_ + at, size_t(n) * sizeof(T)); }
  std::vector<T> to_host() const { return to_host(n_); }
  std::vector<T> to_host(int64_t n) const {
    std::vector<T> v(static_cast<size_t>(n));
    if (n) download(v.data(), n);
    return v;
  }
  static Buffer from_host(const Ops& ops, const std::vector<T>& v) {
    Buffer b(ops, int64_t(v.size()));
    if (!v.empty()) b.upload(v.data(), int64_t(v.size()));
    return b;
  }

 private:
  size_t bytes() const { return size_t(n_) * sizeof(T); }
  void grow(int64_t n) {
    if (n <= n_) return;
    if (p_) ops_->release(p_);
    p_ = nullptr;
    n_ = 0;
    p_ = static_cast<T*>(ops_->alloc(size_t(n) * sizeof(T)));
    n_ = n;
  }
  void swap(Buffer& o) noexcept {
    std::swap(ops_, o.ops_);
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
  }
  const Ops* ops_ = nullptr;
  T* p_ = nullptr;
  int64_t n_ = 0;
};

}  // namespace samq
