// Host memory behind the Ops defaults (backend/ops.h): what reference_ops() and cpu_ops() use.
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backend/ops.h"
#include "core/error.h"
#include "core/fp16.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

namespace samq {

void* Ops::alloc(size_t bytes) const {
  const size_t n = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, n ? n : 64);
  if (!p) fail("{}: out of host memory allocating {} bytes", name(), bytes);
  return p;
}
void Ops::release(void* p) const { std::free(p); }

Ops::MemoryInfo Ops::memory_info() const {
  MemoryInfo mi;
  mi.total = int64_t(sysconf(_SC_PHYS_PAGES)) * int64_t(sysconf(_SC_PAGESIZE));
  mi.free = mi.total;
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    long long kb = 0;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "MemAvailable: %lld kB", &kb) == 1) {
        mi.free = int64_t(kb) * 1024;
        break;
      }
    std::fclose(f);
  }
  struct rusage ru {};
  if (getrusage(RUSAGE_SELF, &ru) == 0) mi.peak_used = int64_t(ru.ru_maxrss) * 1024;
  return mi;
}
void Ops::upload(void* dst, const void* src, size_t bytes) const {
  if (bytes) std::memcpy(dst, src, bytes);
}
void Ops::download(void* dst, const void* src, size_t bytes) const {
  if (bytes) std::memcpy(dst, src, bytes);
}
void Ops::copy(void* dst, const void* src, size_t bytes) const {
  if (bytes && dst != src) std::memmove(dst, src, bytes);
}
void Ops::zero(void* dst, size_t bytes) const {
  if (bytes) std::memset(dst, 0, bytes);
}

namespace {
void round_f16_scalar(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = fp16_to_f32(f32_to_fp16(x[i]));
}
// Hardware conversion rounds to nearest even exactly as f32_to_fp16 does (NaNs stay NaNs).
__attribute__((target("avx512f"))) void round_f16_avx512(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(x + i, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
  round_f16_scalar(x + i, n - i);
}
}  // namespace

void Ops::copy_cols(float* dst, int64_t dst_stride, const float* src, int64_t src_stride, int64_t rows,
                    int64_t cols) const {
  if (!host_memory())
    fail("the {} backend does not implement copy_cols (fused attn_qkv / gate+up models run on the CPU)", name());
  for (int64_t r = 0; r < rows; ++r) std::copy(src + r * src_stride, src + r * src_stride + cols, dst + r * dst_stride);
}

void Ops::round_f16(float* x, int64_t n) const {
  static const bool avx512 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
  }();
  if (avx512)
    round_f16_avx512(x, n);
  else
    round_f16_scalar(x, n);
}

}  // namespace samq
