// Micro-benchmark of the fused dot kernels (backend/cpu/quant_dot.h), single thread (thread CPU time):
// per weight type and instruction-set variant, ns per weight block and weight GB/s for a decode
// shape (1 token) and a prompt shape (8 tokens per call, figures per token), plus activation
// quantization. Not a test. Usage: bench_kernels [rows cols [min_seconds]]
// (default 1536 x 512, the refcode-32m FFN up-projection, and 4096 x 4096).
// bench_kernels --sweep [rows cols [min_seconds]]: cpu_ops().matmul at 1 thread for n = 1..64
// tokens, us per token, with the repacked weight (packed_gemm.h) and without it (today's fused
// kernels, and the default unprepared path: fused below 8 tokens, dequantize + sgemm above).
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/packed_gemm.h"
#include "backend/ops.h"
#include "core/parallel.h"
#include "backend/cpu/quant_dot.h"
#include "core/fp16.h"
#include "core/ggml_type.h"
#include "quant/quantize.h"

using namespace samq;
using namespace samq::cpu;

namespace {

// Thread CPU time: the machine is shared, wall time would count other processes' slices.
double now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

template <class F>
double time_per_call(F&& f, double min_s) {
  f();
  int64_t n = 0;
  const double t0 = now();
  double t1 = t0;
  int64_t reps = 1;
  while (t1 - t0 < min_s) {
    for (int64_t i = 0; i < reps; ++i) f();
    n += reps;
    reps *= 2;
    t1 = now();
  }
  return (t1 - t0) / double(n);
}

void bench_shape(int64_t rows, int64_t cols, double min_s) {
  std::printf("\nweights %lld x %lld\n", (long long)rows, (long long)cols);
  std::printf("%-7s %-7s %9s %9s %9s %9s\n", "type", "isa", "tg ns/blk", "tg GB/s", "pp ns/blk", "pp GB/s");
  std::mt19937 g(1);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> src(rows * cols);
  for (auto& v : src) v = nd(g);
  const int64_t n_pp = 8;
  std::vector<float> x(n_pp * cols);
  for (auto& v : x) v = nd(g) * 20;
  const GgmlType types[] = {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q5_K, GgmlType::Q3_K,
                            GgmlType::Q2_K, GgmlType::IQ4_XS, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::IQ4_NL,
                            GgmlType::Q4_1, GgmlType::Q5_1, GgmlType::F16, GgmlType::BF16};
  for (GgmlType t : types) {
    if (cols % ggml_type_info(t).block_size) continue;
    const int64_t rb = ggml_row_size(t, cols);
    std::vector<uint8_t> w(rows * rb);
    for (int64_t r = 0; r < rows; ++r) {
      if (t == GgmlType::F16) {
        for (int64_t i = 0; i < cols; ++i) reinterpret_cast<uint16_t*>(w.data() + r * rb)[i] = f32_to_fp16(src[r * cols + i]);
      } else if (t == GgmlType::BF16) {
        for (int64_t i = 0; i < cols; ++i) reinterpret_cast<uint16_t*>(w.data() + r * rb)[i] = f32_to_bf16(src[r * cols + i]);
      } else {
        quantize_row(t, src.data() + r * cols, w.data() + r * rb, cols, nullptr);
      }
    }
    std::vector<uint8_t> xq(n_pp * act_row_bytes(t, cols));
    quantize_activations(t, x.data(), n_pp, cols, xq.data());
    std::vector<float> y(n_pp * rows);
    const double nblk = double(rows) * double(cols / ggml_type_info(t).block_size);
    for (DotIsa isa : {DotIsa::Ref, DotIsa::Avx2, DotIsa::Avx512}) {
      if (!dot_isa_supported(isa) || dot_isa_effective(t, isa) != isa) continue;
      const double tg = time_per_call(
          [&] { dot_rows_isa(isa, t, w.data(), rb, 0, rows, xq.data(), 1, cols, y.data(), rows); }, min_s);
      const double pp = time_per_call(
                            [&] { dot_rows_isa(isa, t, w.data(), rb, 0, rows, xq.data(), n_pp, cols, y.data(), rows); },
                            min_s) /
                        double(n_pp);
      std::printf("%-7s %-7s %9.2f %9.2f %9.2f %9.2f\n", std::string(ggml_type_name(t)).c_str(), dot_isa_name(isa),
                  tg * 1e9 / nblk, double(w.size()) / tg / 1e9, pp * 1e9 / nblk, double(w.size()) / pp / 1e9);
      std::fflush(stdout);
    }
  }
  std::printf("activation quantization, ns per row of %lld:\n", (long long)cols);
  for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::Q4_1}) {
    std::vector<uint8_t> xq(n_pp * act_row_bytes(t, cols));
    const double s = time_per_call([&] { quantize_activations(t, x.data(), n_pp, cols, xq.data()); }, min_s) / n_pp;
    std::printf("  %-5s %9.1f\n", t == GgmlType::Q4_K ? "q8_K" : t == GgmlType::Q8_0 ? "q8_0" : "q8_1", s * 1e9);
  }
}

void sweep(int64_t rows, int64_t cols, double min_s) {
  set_num_threads(1);
  std::printf("\ncpu_ops().matmul %lld x %lld, 1 thread, us per token: packed / fused / default unprepared\n",
              (long long)rows, (long long)cols);
  std::mt19937 g(2);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> src(rows * cols), x(64 * cols), y(64 * rows);
  for (auto& v : src) v = nd(g);
  for (auto& v : x) v = nd(g) * 20;
  const int64_t ns[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64};
  std::printf("%-7s", "type");
  for (int64_t n : ns) std::printf(" %15lld", (long long)n);
  std::printf("\n");
  for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q5_K, GgmlType::Q3_K, GgmlType::Q2_K,
                     GgmlType::IQ4_XS, GgmlType::Q4_0}) {
    if (cols % ggml_type_info(t).block_size) continue;
    const int64_t rb = ggml_row_size(t, cols);
    std::vector<uint8_t> w(rows * rb);
    for (int64_t r = 0; r < rows; ++r) quantize_row(t, src.data() + r * cols, w.data() + r * rb, cols, nullptr);
    WeightView v{t, rows, cols, w.data(), rb};
    const auto prep = cpu_ops().prepare_weight(v);
    std::printf("%-7s", std::string(ggml_type_name(t)).c_str());
    for (int64_t n : ns) {
      auto run = [&](const PreparedWeight* p) {
        v.prepared = p;
        return time_per_call([&] { cpu_ops().matmul(x.data(), n, v, nullptr, y.data()); }, min_s) * 1e6 / double(n);
      };
      const double a = prep ? run(prep.get()) : 0.0;
      setenv("SAMQ_PREFILL_PATH", "fused", 1);
      const double b = run(nullptr);
      unsetenv("SAMQ_PREFILL_PATH");
      const double c = run(nullptr);
      std::printf(" %4.1f/%4.1f/%4.1f", a, b, c);
      std::fflush(stdout);
    }
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && !std::strcmp(argv[1], "--sweep")) {
    sweep(argc > 3 ? std::atoll(argv[2]) : 1536, argc > 3 ? std::atoll(argv[3]) : 512, argc > 4 ? std::atof(argv[4]) : 0.1);
    return 0;
  }
  const double min_s = argc > 3 ? std::atof(argv[3]) : 0.2;
  std::printf("best variant on this CPU: %s\n", dot_isa_name(dot_isa_best()));
  if (argc > 2) {
    bench_shape(std::atoll(argv[1]), std::atoll(argv[2]), min_s);
  } else {
    bench_shape(1536, 512, min_s);
    bench_shape(4096, 4096, min_s);
  }
  return 0;
}
