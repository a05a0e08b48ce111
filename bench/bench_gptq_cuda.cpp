// GPTQ of one matrix on the GPU (backend/cuda/gptq_cuda.h) against the CPU (quant/gptq.h): seconds
// per phase, and the CPU's time on the same input for the ratio.
//
//   build/bench/bench_gptq_cuda [--rows 4096] [--cols 14336] [--type q4_K] [--device 0]
//                               [--update exact|sgemm] [--reps 3] [--tokens T] [--cpu-skip]
//                               [--threads N]
//
// Input: W ~ N(0, 1) (rows x cols); H = X^T X / T for X (T x cols, T = cols by default) of N(0, 1)
// inputs with every 61st column scaled by 15 (outlier channels). The default shape is a 7-8B
// model's ffn_down-sized matrix (4096 out x 14336 in).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <cblas.h>

#include "core/error.h"
#include "core/ggml_type.h"
#include "core/parallel.h"
#include "quant/gptq.h"
#include "quant/quantize.h"
#if SAMQ_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gptq_cuda.h"
#endif

using namespace samq;

namespace {

// n draws of N(0, 1), in parallel chunks with their own seeds (same values for any thread count).
[[maybe_unused]] std::vector<float> randn_par(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  constexpr int64_t kChunk = 1 << 20;
  const int64_t chunks = int64_t((n + kChunk - 1) / kChunk);
  parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      std::mt19937 g(seed * 7919u + uint32_t(c));
      std::normal_distribution<float> d(0.0f, 1.0f);
      const size_t end = std::min(n, size_t(c + 1) * kChunk);
      for (size_t i = size_t(c) * kChunk; i < end; ++i) v[i] = d(g);
    }
  });
  return v;
}

[[maybe_unused]] double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--rows R] [--cols C] [--type T] [--device N] [--update exact|sgemm] [--reps N]\n"
               "          [--tokens T] [--cpu-skip] [--threads N]\n",
               argv0);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 4096, cols = 14336, tokens = 0;
  std::string type_name = "q4_K", update = "exact";
  int device = 0, reps = 3, threads = 0;
  bool cpu_skip = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) usage(argv[0]);
      return argv[++i];
    };
    if (a == "--rows") rows = std::atoll(next());
    else if (a == "--cols") cols = std::atoll(next());
    else if (a == "--type") type_name = next();
    else if (a == "--device") device = std::atoi(next());
    else if (a == "--update") update = next();
    else if (a == "--reps") reps = std::atoi(next());
    else if (a == "--tokens") tokens = std::atoll(next());
    else if (a == "--threads") threads = std::atoi(next());
    else if (a == "--cpu-skip") cpu_skip = true;
    else usage(argv[0]);
  }
#if !SAMQ_HAVE_CUDA
  (void)rows, (void)cols, (void)tokens, (void)device, (void)reps, (void)threads, (void)cpu_skip;
  std::printf("bench_gptq_cuda: samq was built without CUDA; nothing to measure\n");
  return 0;
#else
  try {
    set_num_threads(threads);
    const auto t = ggml_type_from_name(type_name);
    if (!t || !gptq_supported(*t)) fail("--type {}: not a GPTQ type", type_name);
    if (update != "exact" && update != "sgemm") fail("--update {}: exact or sgemm", update);
    if (cuda_device_count() <= device) fail("cuda:{} does not exist ({} CUDA devices)", device, cuda_device_count());
    if (tokens <= 0) tokens = cols;
    if (reps < 1) reps = 1;
    std::printf("GPTQ %s, W %lld x %lld, H from %lld tokens, %d CPU threads, cuda:%d, %s update\n",
                type_name.c_str(), (long long)rows, (long long)cols, (long long)tokens, num_threads(), device,
                update.c_str());

    double t0 = now_s();
    const std::vector<float> W = randn_par(size_t(rows * cols), 1);
    std::vector<float> H(size_t(cols * cols));
    {
      std::vector<float> X = randn_par(size_t(tokens * cols), 2);
      parallel_for(tokens, 64, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r)
          for (int64_t c = 3; c < cols; c += 61) X[size_t(r * cols + c)] *= 15.0f;
      });
      cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, int(cols), int(tokens), 1.0f / float(tokens), X.data(),
                  int(cols), 0.0f, H.data(), int(cols));
      parallel_for(cols, 64, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          for (int64_t j = 0; j < i; ++j) H[size_t(i * cols + j)] = H[size_t(j * cols + i)];
      });
    }
    std::printf("input generation: %.2f s\n", now_s() - t0);

    const size_t bytes = size_t(rows) * size_t(ggml_row_size(*t, cols));
    std::vector<uint8_t> gpu(bytes), cpu;
    GptqCudaConfig cfg;
    cfg.update = update == "sgemm" ? GptqCudaUpdate::Sgemm : GptqCudaUpdate::Exact;
    GptqCudaTimings tm;
    cfg.timings = &tm;

    // Warm-up (CUDA context, cuBLAS/cuSOLVER library loading), reported apart.
    {
      const int64_t wc = 256;
      std::vector<float> wh(size_t(wc * wc), 0.0f);
      for (int64_t i = 0; i < wc; ++i) wh[size_t(i * wc + i)] = 1.0f;
      std::vector<uint8_t> wq(size_t(8 * ggml_row_size(*t, wc)));
      t0 = now_s();
      gptq_quantize_tensor_cuda(*t, W.data(), wq.data(), 8, wc, wh.data(), GptqOptions{}, device, cfg);
      std::printf("warm-up (8 x 256, context creation): %.3f s\n", now_s() - t0);
    }

    std::printf("%4s %8s %8s %8s %8s %8s %10s %8s\n", "rep", "setup", "H up", "inverse", "W up", "batches",
                "(host)", "total");
    double best = 1e30;
    for (int rep = 0; rep < reps; ++rep) {
      gptq_quantize_tensor_cuda(*t, W.data(), gpu.data(), rows, cols, H.data(), GptqOptions{}, device, cfg);
      std::printf("%4d %8.3f %8.3f %8.3f %8.3f %8.3f %10.3f %8.3f\n", rep, tm.setup, tm.h_upload, tm.inverse,
                  tm.w_upload, tm.batches, tm.host_steps, tm.total);
      best = std::min(best, tm.total);
    }
    std::printf("GPU best total: %.3f s\n", best);

    if (!cpu_skip) {
      cpu.resize(bytes);
      t0 = now_s();
      gptq_quantize_tensor(*t, W.data(), cpu.data(), rows, cols, H.data(), GptqOptions{});
      const double tc = now_s() - t0;
      const size_t bb = size_t(ggml_type_info(*t).type_size), nb = bytes / bb;
      size_t same = 0;
      for (size_t b = 0; b < nb; ++b) same += std::memcmp(&cpu[b * bb], &gpu[b * bb], bb) == 0;
      std::printf("CPU gptq_quantize_tensor: %.3f s (%d threads); GPU speedup %.1fx; identical blocks %.4f\n", tc,
                  num_threads(), tc / best, double(same) / double(nb));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gptq_cuda: %s\n", e.what());
    return 1;
  }
#endif
}
