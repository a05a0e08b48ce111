// The GPU benchmark (issue 13): how fast samq's analysis, Hessian collection and evaluation
// forward run on the CUDA backend, against the GPU's own measured GEMM peaks, in one run.
//
//   build/bench/bench_cuda [--model-only refcode|synth8b] [--chunks N] [--layers N] [--skip-cpu]
//                          [--device N] [--warmup N] [--cpu-chunks N] [--threads N] [--refcode DIR]
//
// 1. Peaks (cuBLAS, 8192^3, random non-zero data, >= 0.3 s of warm-up calls, median of 15 (bf16) or
//    10 timed calls by cudaEvents): bf16 x bf16 -> f32 (cublasGemmEx, CUBLAS_COMPUTE_32F), f32 SGEMM without TF32
//    (CUBLAS_COMPUTE_32F_PEDANTIC, as the backend's f32 GEMMs), f64 DGEMM, and cublasDsyrk at the
//    Hessian's shape class (n = 14336 columns, k = 512 tokens).
// 2. Per model (refcode-32m from HF bf16 via Model::load(path, cuda_ops()); a synthetic
//    Llama-3-8B-shape model with --layers layers built in memory, bench/synthetic_model.h), on
//    random token ids, chunks of 512 tokens, warm-up chunks first:
//    - analyze: SensitivityAccumulator (full Fisher, default options) over cuda_backward_ops();
//      then forward, softmax-CE, backward alone (ModelGradient) to split one chunk's time;
//    - the statistics ops alone over one chunk's gradients: sum_sq + sq_accumulate per tensor (as
//      fisher.cpp calls them), the fused sq_accumulate_sum, and col_sq at the hooks' shapes;
//    - eval: forward with all logits into a device Buffer (ForwardOptions::logits_out), and with
//      the scored half of the logits downloaded;
//    - eval-KL: evaluate() of a Q4_K_M-like copy against the model (2 forwards per chunk), per-token
//      statistics on the device (Ops::eval_token_stats) and on the host (old path), and the
//      statistics kernel alone;
//    - hessian: forward + xtx_accumulate per distinct input (as collect_hessians, logits kept on
//      the device), then collect_hessians itself (host logits, download + mirror at the end);
//    - refcode only: the same analyze loop on the CPU (cpu_backward_ops()), for the ratio;
//    - device memory: peak of (total - free) by cudaMemGetInfo sampled every 2 ms during each phase.
// 3. A summary table at the end, with a per-phase breakdown of one chunk (forward, backward,
//    softmax-CE + zeroing, statistics, eval-KL): ms, useful TFLOP/s and % of the bf16 peak.
//
// FLOPs ("useful", what the math needs; P = matmul parameters incl. the output head, n = 512):
//   forward  2 P n + A,  A = 2 n^2 n_head hd n_layer (causal attention: 4 n hd n_head / 2 per
//   token and layer);  backward 4 P n + 2 A (dx and dW);  analyze chunk = forward + 2 backward.
//   Hessian: per token, per distinct input of c columns, 2 c^2 for the full x^T x (cublasDsyrk
//   computes one triangle: c (c + 1), reported against the FP64 DGEMM peak).
//   Also shown: GEMM FLOPs the CUDA backend executes for BF16 weights (forward 1 GEMM; backward
//   dx 2 + dW 3 bf16 GEMMs: the hi/lo split, so 10 P n per backward) and for attention (f32
//   GEMMs over all n keys: forward 4 n^2 d_q, backward 10 n^2 d_q per layer).
//
// Exit status: 0 done, 1 a measurement failed, 2 bad arguments, 77 no CUDA device or samq built
// without CUDA. Hidden: --cpu-smoke runs every phase on the CPU on a tiny synthetic model (and
// refcode's CPU analyze on 1 chunk unless --skip-cpu), to check this program without a GPU.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "analyze/activation_pass.h"
#include "analyze/fisher.h"
#include "analyze/hessian.h"
#include "backend/buffer.h"
#include "backend/device.h"
#include "backend/ops.h"
#include "backend/ops_backward.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "eval/perplexity.h"
#include "model/backward.h"
#include "model/forward.h"
#include "model/model.h"
#include "quant/quantize.h"
#include "synthetic_model.h"

#if defined(SAMQ_HAVE_CUDA) && SAMQ_HAVE_CUDA
#define BENCH_CUDA 1
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backend/cuda/cuda_backend.h"
#else
#define BENCH_CUDA 0
#endif

using namespace samq;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

struct Options {
  std::string model_only;  // "", "refcode", "synth8b"
  int chunks = -1;         // timed chunks per model (-1: refcode 16, synth8b 8)
  int warmup = 2;
  int layers = 4;
  int cpu_chunks = 2;
  int device = 0;
  int threads = 0;
  int64_t ctx = 512;
  bool skip_cpu = false;
  bool cpu_smoke = false;
  std::string refcode = std::string(SAMQ_SHARED_DIR) + "/models/refcode-32m";
};

[[noreturn]] void usage(const char* argv0, const char* why) {
  if (why) std::fprintf(stderr, "error: %s\n", why);
  std::fprintf(stderr,
               "usage: %s [--model-only refcode|synth8b] [--chunks N] [--layers N] [--skip-cpu]\n"
               "          [--device N] [--warmup N] [--cpu-chunks N] [--threads N] [--refcode DIR]\n",
               argv0);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  auto num = [&](int& i, int lo) {
    if (i + 1 >= argc) usage(argv[0], "missing value");
    char* end = nullptr;
    const long v = std::strtol(argv[++i], &end, 10);
    if (!end || *end || v < lo || v > 1000000) usage(argv[0], "bad number");
    return int(v);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--model-only") {
      if (i + 1 >= argc) usage(argv[0], "missing value");
      o.model_only = argv[++i];
      if (o.model_only != "refcode" && o.model_only != "synth8b") usage(argv[0], "--model-only: refcode or synth8b");
    } else if (a == "--chunks") {
      o.chunks = num(i, 1);
    } else if (a == "--layers") {
      o.layers = num(i, 1);
    } else if (a == "--warmup") {
      o.warmup = num(i, 0);
    } else if (a == "--cpu-chunks") {
      o.cpu_chunks = num(i, 1);
    } else if (a == "--device") {
      o.device = num(i, 0);
    } else if (a == "--threads") {
      o.threads = num(i, 0);
    } else if (a == "--ctx") {  // hidden: chunk length (default 512)
      o.ctx = num(i, 2);
    } else if (a == "--refcode") {
      if (i + 1 >= argc) usage(argv[0], "missing value");
      o.refcode = argv[++i];
    } else if (a == "--skip-cpu") {
      o.skip_cpu = true;
    } else if (a == "--cpu-smoke") {
      o.cpu_smoke = true;
    } else if (a == "-h" || a == "--help") {
      usage(argv[0], nullptr);
    } else {
      usage(argv[0], ("unknown argument " + a).c_str());
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// FLOP accounting (see the header comment).

struct FlopModel {
  double P = 0, P_head = 0;              // matmul parameters (incl. head), of which the head
  double P_bf16 = 0;                     // of P, in BF16 weights (the split-GEMM backward)
  double d_q = 0, L = 0;                 // n_head * head_dim, layers
  std::vector<int64_t> hess_cols;        // columns of each distinct Hessian input
  bool head_hessian = false;

  explicit FlopModel(const Model& m) {
    const auto& h = m.hparams;
    d_q = double(h.n_embd_q());
    L = double(h.n_layer);
    const Tensor& head = m.weights.lm_head();
    for_each_tensor(m.weights, [&](const Tensor& t) {
      const bool matmul = t.rows > 1 && (&t != &m.weights.token_embd || &t == &head);
      if (!matmul) return;
      P += double(t.n_elements());
      if (t.type == GgmlType::BF16) P_bf16 += double(t.n_elements());
    });
    P_head = double(head.n_elements());
    for (const auto& l : m.weights.layers) {
      if (l.attn_q.present()) hess_cols.push_back(l.attn_q.cols);         // attn_norm
      if (l.attn_output.present()) hess_cols.push_back(l.attn_output.cols);  // kq_out
      if (l.ffn_gate.present()) hess_cols.push_back(l.ffn_gate.cols);     // ffn_norm
      if (l.ffn_down.present()) hess_cols.push_back(l.ffn_down.cols);     // ffn_act
    }
    head_hessian = m.weights.output.present();
    if (head_hessian) hess_cols.push_back(m.weights.output.cols);  // result_norm
  }
  double attn_fwd(double n) const { return 2.0 * n * n * d_q * L; }
  double fwd(double n) const { return 2 * P * n + attn_fwd(n); }
  double bwd(double n) const { return 4 * P * n + 2 * attn_fwd(n); }
  double analyze(double n) const { return fwd(n) + 2 * bwd(n); }
  // GEMM FLOPs the CUDA backend executes (bf16 split backward, full-length f32 attention).
  double exec_mm_bf16(double n) const { return (2 * P_bf16 + 2 * 10 * P_bf16) * n; }
  double exec_mm_other(double n) const { return (2 * (P - P_bf16) + 2 * 4 * (P - P_bf16)) * n; }
  double exec_attn_f32(double n) const { return (4.0 + 2 * 10.0) * n * n * d_q * L; }
  // Hessian per token.
  double hess_full_per_token() const {
    double s = 0;
    for (int64_t c : hess_cols) s += 2.0 * double(c) * double(c);
    return s;
  }
  double hess_syrk_per_token() const {
    double s = 0;
    for (int64_t c : hess_cols) s += double(c) * double(c + 1);
    return s;
  }
  // The forward collect_hessians runs (no head when there is no Hessian for it).
  double hess_fwd(double n) const { return fwd(n) - (head_hessian ? 0.0 : 2 * P_head * n); }
};

// ---------------------------------------------------------------------------------------------
// CUDA: checks, GEMM peaks, memory sampling.

struct Peaks {
  double bf16 = 0, f32 = 0, f64 = 0, dsyrk = 0;  // TFLOP/s (median); 0: not measured
  std::string note;
};

#if BENCH_CUDA
void ck(cudaError_t e, const char* what, const char* file, int line) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();
  throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                           ") at " + file + ":" + std::to_string(line));
}
void cb(cublasStatus_t s, const char* what, const char* file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string(what) + " failed: " + cublasGetStatusString(s) + " (" +
                           std::to_string(int(s)) + ") at " + file + ":" + std::to_string(line));
}
#define CK(x) ck((x), #x, __FILE__, __LINE__)
#define CB(x) cb((x), #x, __FILE__, __LINE__)

struct DevMem {
  void* p = nullptr;
  explicit DevMem(size_t bytes) { CK(cudaMalloc(&p, bytes)); }
  ~DevMem() {
    if (p) (void)cudaFree(p);
  }
  DevMem(const DevMem&) = delete;
  DevMem& operator=(const DevMem&) = delete;
};

struct Events {
  std::vector<cudaEvent_t> ev;
  explicit Events(int n) {
    for (int i = 0; i < n; ++i) {
      cudaEvent_t e = nullptr;
      CK(cudaEventCreate(&e));
      ev.push_back(e);
    }
  }
  ~Events() {
    for (auto e : ev) (void)cudaEventDestroy(e);
  }
};

// n values uniform in +-[0.25, 1] (never zero), deterministic, in parallel.
std::vector<float> rand_nonzero(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  constexpr int64_t kChunk = 1 << 20;
  parallel_for(int64_t((n + kChunk - 1) / kChunk), 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      bench::synth_detail::Rng r(seed * 7919u + uint64_t(c));
      const size_t end = std::min(n, size_t(c + 1) * kChunk);
      for (size_t i = size_t(c) * kChunk; i < end; ++i) {
        const double u = r.uniform();
        v[i] = float((u < 0.5 ? -1.0 : 1.0) * (0.25 + 1.5 * std::fabs(u - 0.5)));
      }
    }
  });
  return v;
}

// Median and best TFLOP/s of `launch` (one GEMM on stream st) over reps timed calls.
struct GemmTime {
  double median_tflops = 0, best_tflops = 0, median_ms = 0;
};
template <class F>
GemmTime time_gemm(F launch, double flops, cudaStream_t st, int warm = 3, int reps = 15) {
  // warm-up: at least `warm` calls and 0.3 s of work (clocks ramp up)
  const double t0 = now_s();
  for (int i = 1;; ++i) {
    launch();
    if (i % 4 == 0 || i >= warm) CK(cudaStreamSynchronize(st));
    if (i >= warm && now_s() - t0 >= 0.3) break;
  }
  Events e(2 * reps);
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(e.ev[2 * i], st));
    launch();
    CK(cudaEventRecord(e.ev[2 * i + 1], st));
  }
  CK(cudaStreamSynchronize(st));
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    float t = 0;
    CK(cudaEventElapsedTime(&t, e.ev[2 * i], e.ev[2 * i + 1]));
    ms.push_back(double(t));
  }
  GemmTime g;
  g.median_ms = median(ms);
  g.median_tflops = flops / (g.median_ms * 1e-3) / 1e12;
  g.best_tflops = flops / (*std::min_element(ms.begin(), ms.end()) * 1e-3) / 1e12;
  return g;
}

// A few values of C must be finite and non-zero (the inputs are random non-zero).
template <class T>
void check_output(const void* dev, size_t n, const char* what) {
  std::vector<T> h(std::min<size_t>(n, 4096));
  CK(cudaMemcpy(h.data(), dev, h.size() * sizeof(T), cudaMemcpyDeviceToHost));
  size_t bad = 0;
  for (T x : h)
    if (!std::isfinite(double(x)) || x == T(0)) ++bad;
  if (bad) std::printf("  WARNING: %s: %zu of the first %zu outputs are zero or not finite\n", what, bad, h.size());
}

Peaks measure_peaks(int dev) {
  Peaks pk;
  CK(cudaSetDevice(dev));
  cudaStream_t st = nullptr;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cublasHandle_t h = nullptr;
  struct Cleanup {
    cudaStream_t& st;
    cublasHandle_t& h;
    ~Cleanup() {
      if (h) (void)cublasDestroy(h);
      if (st) (void)cudaStreamDestroy(st);
    }
  } cleanup{st, h};
  CB(cublasCreate(&h));
  CB(cublasSetStream(h, st));
  CB(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
  const int N = 8192;
  const size_t NN = size_t(N) * N;
  const double gemm_flops = 2.0 * double(N) * N * N;
  const std::vector<float> ha = rand_nonzero(NN, 11), hb = rand_nonzero(NN, 12);
  const float one = 1.0f, zero = 0.0f;
  {  // bf16 x bf16 -> f32, FP32 accumulation
    std::vector<uint16_t> a16(NN), b16(NN);
    parallel_for(int64_t(NN), int64_t(1) << 20, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        a16[i] = f32_to_bf16(ha[i]);
        b16[i] = f32_to_bf16(hb[i]);
      }
    });
    DevMem A(NN * 2), B(NN * 2), C(NN * 4);
    CK(cudaMemcpy(A.p, a16.data(), NN * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(B.p, b16.data(), NN * 2, cudaMemcpyHostToDevice));
    const GemmTime g = time_gemm(
        [&] {
          CB(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, N, N, &one, A.p, CUDA_R_16BF, N, B.p, CUDA_R_16BF, N, &zero,
                          C.p, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        },
        gemm_flops, st);
    check_output<float>(C.p, NN, "bf16 GEMM");
    pk.bf16 = g.median_tflops;
    std::printf("  bf16 GEMM  (cublasGemmEx bf16 x bf16 -> f32, COMPUTE_32F, 8192^3): median %8.1f TFLOP/s "
                "(%.3f ms), best %.1f\n",
                g.median_tflops, g.median_ms, g.best_tflops);
    std::fflush(stdout);
  }
  {  // f32 without TF32
    DevMem A(NN * 4), B(NN * 4), C(NN * 4);
    CK(cudaMemcpy(A.p, ha.data(), NN * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(B.p, hb.data(), NN * 4, cudaMemcpyHostToDevice));
    const GemmTime g = time_gemm(
        [&] {
          CB(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, N, N, &one, A.p, CUDA_R_32F, N, B.p, CUDA_R_32F, N, &zero,
                          C.p, CUDA_R_32F, N, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT));
        },
        gemm_flops, st, 2, 10);
    check_output<float>(C.p, NN, "f32 GEMM");
    pk.f32 = g.median_tflops;
    std::printf("  f32 SGEMM  (COMPUTE_32F_PEDANTIC: no TF32, as the backend's f32 GEMMs, 8192^3): median %8.1f "
                "TFLOP/s (%.3f ms), best %.1f\n",
                g.median_tflops, g.median_ms, g.best_tflops);
    std::fflush(stdout);
  }
  {  // f64
    std::vector<double> a64(ha.begin(), ha.end()), b64(hb.begin(), hb.end());
    DevMem A(NN * 8), B(NN * 8), C(NN * 8);
    CK(cudaMemcpy(A.p, a64.data(), NN * 8, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(B.p, b64.data(), NN * 8, cudaMemcpyHostToDevice));
    const double done = 1.0, dzero = 0.0;
    const GemmTime g = time_gemm(
        [&] {
          CB(cublasDgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, N, N, N, &done, static_cast<const double*>(A.p), N,
                         static_cast<const double*>(B.p), N, &dzero, static_cast<double*>(C.p), N));
        },
        gemm_flops, st, 2, 10);
    check_output<double>(C.p, NN, "f64 DGEMM");
    pk.f64 = g.median_tflops;
    std::printf("  f64 DGEMM  (cublasDgemm, 8192^3): median %8.1f TFLOP/s (%.3f ms), best %.1f\n", g.median_tflops,
                g.median_ms, g.best_tflops);
    // cublasDsyrk at the Hessian's largest shape class: C (n x n, lower) += A A^T, A (n x k).
    const int n = 14336, k = 512;
    std::vector<double> x(size_t(n) * k);
    for (size_t i = 0; i < x.size(); ++i) x[i] = double(ha[i]);
    DevMem X(x.size() * 8), H(size_t(n) * n * 8);
    CK(cudaMemcpy(X.p, x.data(), x.size() * 8, cudaMemcpyHostToDevice));
    CK(cudaMemset(H.p, 0, size_t(n) * n * 8));
    const GemmTime s = time_gemm(
        [&] {
          CB(cublasDsyrk(h, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, n, k, &done, static_cast<const double*>(X.p), n,
                         &done, static_cast<double*>(H.p), n));
        },
        double(k) * n * (n + 1.0), st, 2, 10);
    pk.dsyrk = s.median_tflops;
    std::printf("  f64 DSYRK  (cublasDsyrk n=%d k=%d, one triangle: k n (n+1) FLOPs): median %8.1f TFLOP/s "
                "(%.3f ms), best %.1f\n",
                n, k, s.median_tflops, s.median_ms, s.best_tflops);
    std::fflush(stdout);
  }
  CK(cudaStreamSynchronize(st));
  return pk;
}

size_t device_used_bytes(int dev) {
  size_t f = 0, t = 0;
  CK(cudaSetDevice(dev));
  CK(cudaMemGetInfo(&f, &t));
  return t - f;
}

// Peak of (total - free) while running: a thread samples cudaMemGetInfo every 2 ms.
class MemSampler {
 public:
  MemSampler(bool on, int dev) : on_(on), dev_(dev) {
    if (!on_) return;
    peak_ = device_used_bytes(dev_);
    th_ = std::thread([this] {
      if (cudaSetDevice(dev_) != cudaSuccess) {
        (void)cudaGetLastError();
        failed_ = true;
        return;
      }
      while (!stop_.load()) {
        size_t f = 0, t = 0;
        if (cudaMemGetInfo(&f, &t) != cudaSuccess) {
          (void)cudaGetLastError();
          failed_ = true;
          return;
        }
        size_t cur = peak_.load();
        while (t - f > cur && !peak_.compare_exchange_weak(cur, t - f)) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
  }
  ~MemSampler() { finish(); }
  // Peak bytes in use (0 when off); also samples once more at the end.
  size_t finish() {
    if (!on_) return 0;
    if (th_.joinable()) {
      stop_ = true;
      th_.join();
      try {
        peak_ = std::max(peak_.load(), device_used_bytes(dev_));
      } catch (...) {
        failed_ = true;
      }
    }
    return peak_.load();
  }
  bool failed() const { return failed_; }

 private:
  bool on_;
  int dev_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> peak_{0};
  std::atomic<bool> failed_{false};
  std::thread th_;
};
#else
class MemSampler {
 public:
  MemSampler(bool, int) {}
  size_t finish() { return 0; }
  bool failed() const { return false; }
};
#endif

// ---------------------------------------------------------------------------------------------
// Per-model measurements.

struct RunCfg {
  int64_t ctx = 512;
  int warmup = 2, timed = 8;
  bool gpu = false;  // sample device memory
  int device = 0;
  bool run_hessian_collect = true;
};

struct Result {
  std::string label, device;
  bool ok = true;
  std::string error;
  std::string failed_phase;
  double P = 0, P_head = 0, weight_bytes = 0;
  int timed = 0;
  int64_t ctx = 0;
  // analyze
  double an_s_chunk = 0, an_tok_s = 0, an_tflops = 0, an_exec_tflops = 0, an_loss = 0;
  double fwd_s = 0, loss_s = 0, zero_s = 0, bwd_s = 0, stats_s = 0, fwd_tflops = 0, bwd_tflops = 0;
  // hessian
  double hs_tok_s = 0, hs_full_tflops = 0, hs_syrk_tflops = 0, hs_xtx_s = 0, hs_xtx_syrk_tflops = 0;
  double hc_marginal_tok_s = 0, hc_total_tok_s = 0, hc_fixed_s = 0, hc_total_s = 0;
  // eval
  double ev_dev_tok_s = 0, ev_dev_s = 0, ev_dev_tflops = 0, ev_host_tok_s = 0;
  // eval-KL: evaluate() against a base model (this model: 2 forwards per chunk), statistics on the
  // device (default on a GPU) and on the host (the old path); the statistics kernel alone
  double kl_tok_s = 0, kl_s_chunk = 0, kl_tflops = 0, kl_host_tok_s = 0, kl_kernel_s = 0, kl_kernel_gbs = 0;
  double kl_qfwd_s = 0;  // forward of the quantized copy alone
  // statistics ops alone over one chunk's gradients (per label kind): as fisher.cpp calls them
  // (sum_sq waits per tensor, then sq_accumulate), fused (sq_accumulate_sum, no wait), col_sq of
  // the linear hooks; bytes moved and GB/s
  double st_old_s = 0, st_fused_s = 0, st_colsq_s = 0, st_old_gbs = 0, st_fused_gbs = 0, st_colsq_gbs = 0;
  double st_elems = 0;
  // cpu
  double cpu_tok_s = 0, cpu_gflops = 0;
  int cpu_threads = 0;
  // memory (bytes)
  size_t mem_analyze = 0, mem_split = 0, mem_hessian = 0, mem_eval = 0, mem_base = 0;
};

std::vector<std::vector<int32_t>> random_chunks(int count, int64_t ctx, int64_t vocab, uint64_t seed) {
  std::vector<std::vector<int32_t>> c(static_cast<size_t>(count));
  bench::synth_detail::Rng r(seed);
  for (auto& v : c) {
    v.resize(static_cast<size_t>(ctx));
    for (auto& t : v) t = int32_t(r.next() % uint64_t(vocab));
  }
  return c;
}

double pct(double x, double peak) { return peak > 0 ? 100.0 * x / peak : 0.0; }
std::string pct_str(double x, double peak, const char* suffix = "") {
  if (peak <= 0) return "n/a";
  char b[48];
  std::snprintf(b, sizeof b, "%.1f%%%s", pct(x, peak), suffix);
  return b;
}

void print_flop_model(const std::string& tag, const FlopModel& f, double n) {
  std::printf("%s FLOP model: P (matmul params incl. head) = %.4g (head %.4g), attention d_q %g x %g layers\n",
              tag.c_str(), f.P, f.P_head, f.d_q, f.L);
  std::printf("%s   per %g-token chunk: forward %.4g GFLOP (attention %.3g), backward %.4g GFLOP each, "
              "analyze (fwd + 2 bwd) %.4g GFLOP useful\n",
              tag.c_str(), n, f.fwd(n) / 1e9, f.attn_fwd(n) / 1e9, f.bwd(n) / 1e9, f.analyze(n) / 1e9);
  std::printf("%s   executed by the CUDA backend per analyze chunk: bf16 GEMMs %.4g GFLOP (split backward: 10 P n "
              "each), other-type GEMMs %.4g, f32 attention GEMMs %.4g\n",
              tag.c_str(), f.exec_mm_bf16(n) / 1e9, f.exec_mm_other(n) / 1e9, f.exec_attn_f32(n) / 1e9);
  std::printf("%s   hessian per token: full x^T x %.4g MFLOP (%zu inputs), Dsyrk triangle %.4g MFLOP\n", tag.c_str(),
              f.hess_full_per_token() / 1e6, f.hess_cols.size(), f.hess_syrk_per_token() / 1e6);
  std::fflush(stdout);
}

// Runs fn; a failure is printed and recorded in r, and the next phase still runs.
template <class F>
void phase(Result& r, const char* name, F fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    r.ok = false;
    if (!r.error.empty()) r.error += "; ";
    r.error += std::string(name) + ": " + e.what();
    std::printf("[%s] %s FAILED: %s\n", r.label.c_str(), name, e.what());
    std::fflush(stdout);
  }
}

// A copy of m with its matmul weights quantized as a Q4_K_M-like file (Q4_K, the output head
// Q6_K; Q8_0 where the row length is not a multiple of 256), embedding and norms shared: the
// "quantized file" of `samq eval --base`. Host bytes; call prepare_weights.
std::shared_ptr<Model> quantized_copy(const Model& m) {
  auto q = std::make_shared<Model>();
  q->hparams = m.hparams;
  q->weights = m.weights;
  q->path = m.path + "-q4_k_m";
  q->ggml_numerics = m.ggml_numerics;
  auto quantize = [](Tensor& t, GgmlType type) {
    if (!t.present() || t.rows <= 1) return;
    if (t.cols % 256 != 0) type = GgmlType::Q8_0;
    Tensor o;
    o.name = t.name;
    o.type = type;
    o.rows = t.rows;
    o.cols = t.cols;
    o.owned = std::make_shared<std::vector<uint8_t>>(size_t(o.n_bytes()));
    o.data = o.owned->data();
    WeightView src = t.view();
    src.prepared = nullptr;  // the host bytes
    const int64_t rb = o.row_bytes();
    uint8_t* dst = o.owned->data();
    parallel_for(t.rows, 16, [&](int64_t b, int64_t e) {
      std::vector<float> row(static_cast<size_t>(t.cols));
      for (int64_t r = b; r < e; ++r) {
        dequantize_weight_row(src, r, row.data());
        quantize_row(type, row.data(), dst + r * rb, t.cols, nullptr);
      }
    });
    t = std::move(o);
  };
  for (auto& L : q->weights.layers)
    for (Tensor* t : {&L.attn_q, &L.attn_k, &L.attn_v, &L.attn_output, &L.ffn_gate, &L.ffn_up, &L.ffn_down})
      quantize(*t, GgmlType::Q4_K);
  if (q->weights.output.present()) quantize(q->weights.output, GgmlType::Q6_K);
  return q;
}

// Runs every phase on model m over bops; prints as it goes. A failed phase is recorded in r and
// the next one still runs.
void run_model(Result& r, const Model& m, const BackwardOps& bops, const RunCfg& rc, const Peaks& pk) {
  const Ops& ops = bops.ops();
  const std::string tag = "[" + r.label + "]";
  const int64_t n = rc.ctx, V = m.hparams.n_vocab;
  const double dn = double(n);
  const FlopModel f(m);
  r.P = f.P;
  r.P_head = f.P_head;
  r.ctx = n;
  r.timed = rc.timed;
  r.device = ops.device();
  for_each_tensor(m.weights, [&](const Tensor& t) { r.weight_bytes += double(t.n_bytes()); });
  std::printf("%s device %s, %lld layers, n_embd %lld, n_vocab %lld, weights %.3f GiB, ctx %lld, %d warm-up + %d "
              "timed chunks of random token ids\n",
              tag.c_str(), r.device.c_str(), (long long)m.hparams.n_layer, (long long)m.hparams.n_embd,
              (long long)V, r.weight_bytes / kGiB, (long long)n, rc.warmup, rc.timed);
  print_flop_model(tag, f, dn);
  const auto chunks = random_chunks(rc.warmup + rc.timed, n, V, 0xc0ffee + uint64_t(V));

  // ---- analyze: SensitivityAccumulator, full Fisher (default options)
  phase(r, "analyze", [&] {
    MemSampler mem(rc.gpu, rc.device);
    SensitivityAccumulator acc(m, bops);
    for (int i = 0; i < rc.warmup; ++i) acc.add_chunk(chunks[i], i);
    ops.synchronize();
    const double t0 = now_s();
    for (int i = rc.warmup; i < rc.warmup + rc.timed; ++i) acc.add_chunk(chunks[i], i);
    ops.synchronize();
    const double secs = now_s() - t0;
    r.mem_analyze = mem.finish();
    r.an_s_chunk = secs / rc.timed;
    r.an_tok_s = dn * rc.timed / secs;
    r.an_tflops = f.analyze(dn) * rc.timed / secs / 1e12;
    r.an_exec_tflops = (f.exec_mm_bf16(dn) + f.exec_mm_other(dn) + f.exec_attn_f32(dn)) * rc.timed / secs / 1e12;
    r.an_loss = acc.mean_loss();
    std::printf("%s analyze (SensitivityAccumulator, full Fisher): %d chunks in %.3f s = %.1f ms/chunk, %.1f "
                "tokens/s, %.3g TFLOP/s useful = %s of bf16 peak (executed GEMMs %.3g TFLOP/s); mean loss %.3f "
                "(ln V = %.3f)%s\n",
                tag.c_str(), rc.timed, secs, 1e3 * r.an_s_chunk, r.an_tok_s, r.an_tflops,
                pct_str(r.an_tflops, pk.bf16).c_str(), r.an_exec_tflops, r.an_loss, std::log(double(V)),
                std::isfinite(r.an_loss) ? "" : "  WARNING: loss not finite");
    if (rc.gpu)
      std::printf("%s   device memory peak during analyze: %.2f GiB in use%s\n", tag.c_str(),
                  double(r.mem_analyze) / kGiB, mem.failed() ? " (sampling failed)" : "");
    std::fflush(stdout);
  });

  // ---- split of one chunk: forward, softmax-CE backward, zeroing, backward alone (ModelGradient)
  phase(r, "split", [&] {
    MemSampler mem(rc.gpu, rc.device);
    ModelGradient mg(m, bops);
    GradientBuffers grads(m.weights, ops);
    Buffer<float> dl(ops, n * V);
    Buffer<int32_t> lab(ops, n);
    std::vector<double> tf, tl, tz, tb;
    const int reps = std::max(1, std::min(rc.timed, 4));
    for (int i = 0; i < rc.warmup + reps; ++i) {
      const auto& c = chunks[size_t(i) % chunks.size()];
      std::vector<int32_t> labels(static_cast<size_t>(n), -1);
      for (int64_t t = 0; t + 1 < n; ++t) labels[t] = c[t + 1];
      lab.upload(labels.data(), n);
      ops.synchronize();
      const double t0 = now_s();
      const float* logits = mg.forward(c);
      ops.synchronize();
      const double t1 = now_s();
      (void)bops.softmax_cross_entropy_backward(logits, lab.data(), n, V, 1.0f, dl.data(), nullptr);
      ops.synchronize();
      const double t2 = now_s();
      grads.zero();
      ops.synchronize();
      const double t3 = now_s();
      mg.backward(dl.data(), &grads, nullptr);
      ops.synchronize();
      const double t4 = now_s();
      if (i >= rc.warmup) {
        tf.push_back(t1 - t0);
        tl.push_back(t2 - t1);
        tz.push_back(t3 - t2);
        tb.push_back(t4 - t3);
      }
    }
    r.mem_split = mem.finish();
    r.fwd_s = median(tf);
    r.loss_s = median(tl);
    r.zero_s = median(tz);
    r.bwd_s = median(tb);
    r.stats_s = r.an_s_chunk > 0 ? r.an_s_chunk - r.fwd_s - 2 * (r.loss_s + r.zero_s + r.bwd_s) : 0.0;
    r.fwd_tflops = f.fwd(dn) / r.fwd_s / 1e12;
    r.bwd_tflops = f.bwd(dn) / r.bwd_s / 1e12;
    std::printf("%s split of one analyze chunk (median of %d, ModelGradient alone): forward %.2f ms (%.3g TFLOP/s), "
                "softmax-CE backward %.2f ms, zero gradients %.2f ms, backward %.2f ms (%.3g TFLOP/s useful)\n",
                tag.c_str(), reps, 1e3 * r.fwd_s, f.fwd(dn) / r.fwd_s / 1e12, 1e3 * r.loss_s, 1e3 * r.zero_s,
                1e3 * r.bwd_s, f.bwd(dn) / r.bwd_s / 1e12);
    std::printf("%s   analyze chunk %.2f ms = forward %.2f + 2 x (CE %.2f + zero %.2f + backward %.2f) + statistics, "
                "label sampling & rest %.2f ms (%.0f%%)\n",
                tag.c_str(), 1e3 * r.an_s_chunk, 1e3 * r.fwd_s, 1e3 * r.loss_s, 1e3 * r.zero_s, 1e3 * r.bwd_s,
                1e3 * r.stats_s, pct(r.stats_s, r.an_s_chunk));
    std::fflush(stdout);

    // The statistics ops alone, over this chunk's gradients, once per label kind as
    // SensitivityAccumulator runs them (medians of 3).
    {
      std::vector<Buffer<float>> g2;
      double elems = 0;
      for (auto& e : grads.entries()) {
        g2.emplace_back(ops, e.rows * e.cols);
        g2.back().zero();
        elems += double(e.rows * e.cols);
      }
      r.st_elems = elems;
      Buffer<double> sums(ops, int64_t(grads.entries().size()));
      double colsq_bytes = 0;
      Buffer<double> cacc(ops, std::max<int64_t>(V, 1 << 16));
      cacc.zero();
      std::vector<double> t_old, t_fused, t_col;
      for (int rep = 0; rep < 4; ++rep) {
        ops.synchronize();
        double t0 = now_s();
        double norm = 0;
        size_t i = 0;
        for (auto& e : grads.entries()) {
          norm += std::sqrt(bops.sum_sq(e.g.data(), e.rows * e.cols));
          bops.sq_accumulate(e.g.data(), e.rows * e.cols, g2[i++].data());
        }
        ops.synchronize();
        double t1 = now_s();
        i = 0;
        for (auto& e : grads.entries()) {
          bops.sq_accumulate_sum(e.g.data(), e.rows * e.cols, g2[i].data(), sums.data() + i);
          ++i;
        }
        const std::vector<double> hs = sums.to_host();  // one download for every tensor
        double norm2 = 0;
        for (double x : hs) norm2 += std::sqrt(x);
        double t2 = now_s();
        // col_sq of the linear hooks: dy (rows wide) per label kind, x (cols wide) for one of them;
        // dl's rows stand in for the activations (same shapes, bytes and access pattern)
        colsq_bytes = 0;
        for_each_tensor(m.weights, [&](const Tensor& t) {
          if (t.rows <= 1 || (&t == &m.weights.token_embd && &t != &m.weights.lm_head())) return;
          if (t.rows > V || t.cols > V) return;
          bops.col_sq_accumulate(dl.data(), n, t.rows, cacc.data());
          bops.col_sq_accumulate(dl.data(), n, t.cols, cacc.data());
          colsq_bytes += 4.0 * double(n) * double(t.rows + t.cols);
        });
        ops.synchronize();
        double t3 = now_s();
        if (rep > 0) {
          t_old.push_back(t1 - t0);
          t_fused.push_back(t2 - t1);
          t_col.push_back(t3 - t2);
        }
        if (rep == 0 && std::fabs(norm - norm2) > 1e-9 * std::fabs(norm))
          std::printf("%s   WARNING: fused gradient norm %.17g != sum_sq's %.17g\n", tag.c_str(), norm2, norm);
      }
      r.st_old_s = median(t_old);
      r.st_fused_s = median(t_fused);
      r.st_colsq_s = median(t_col);
      r.st_old_gbs = 16.0 * elems / r.st_old_s / 1e9;
      r.st_fused_gbs = 12.0 * elems / r.st_fused_s / 1e9;
      r.st_colsq_gbs = colsq_bytes / r.st_colsq_s / 1e9;
      std::printf("%s statistics ops alone over one chunk's gradients (%.3g G elements), per label kind: sum_sq + "
                  "sq_accumulate per tensor (as fisher.cpp) %.2f ms = %.0f GB/s; fused sq_accumulate_sum (one "
                  "download) %.2f ms = %.0f GB/s; col_sq of the linear hooks (dy and x) %.2f ms = %.0f GB/s\n",
                  tag.c_str(), elems / 1e9, 1e3 * r.st_old_s, r.st_old_gbs, 1e3 * r.st_fused_s, r.st_fused_gbs,
                  1e3 * r.st_colsq_s, r.st_colsq_gbs);
      std::fflush(stdout);
    }
  });

  // ---- eval forward: all logits into a device buffer; and as evaluate() does today
  phase(r, "eval", [&] {
    MemSampler mem(rc.gpu, rc.device);
    Buffer<float> logits(ops, n * V);
    auto run = [&](const std::vector<int32_t>& c, bool device_logits) {
      KvCache cache(m, n);
      Batch b;
      BatchSeq& s = b.add(&cache, c, true);
      ForwardOptions fo;
      if (device_logits) {
        fo.logits_out = logits.data();
      } else {
        s.logits_from = n / 2;  // eval_first_scored(ctx): the scored half comes back to the host
      }
      forward(m, ops, b, fo);
    };
    for (int i = 0; i < rc.warmup; ++i) run(chunks[i], true);
    ops.synchronize();
    double t0 = now_s();
    for (int i = rc.warmup; i < rc.warmup + rc.timed; ++i) run(chunks[i], true);
    ops.synchronize();
    const double secs = now_s() - t0;
    r.ev_dev_s = secs / rc.timed;
    r.ev_dev_tok_s = dn * rc.timed / secs;
    r.ev_dev_tflops = f.fwd(dn) * rc.timed / secs / 1e12;
    run(chunks[0], false);
    ops.synchronize();
    t0 = now_s();
    for (int i = rc.warmup; i < rc.warmup + rc.timed; ++i) run(chunks[i], false);
    ops.synchronize();
    const double secs_h = now_s() - t0;
    r.ev_host_tok_s = dn * rc.timed / secs_h;
    r.mem_eval = mem.finish();
    std::printf("%s eval forward (KvCache per chunk, all %lld logits rows kept on the device via logits_out): %.2f "
                "ms/chunk, %.1f tokens/s, %.3g TFLOP/s = %s of bf16 peak (KL is computed separately, not timed)\n",
                tag.c_str(), (long long)n, 1e3 * r.ev_dev_s, r.ev_dev_tok_s, r.ev_dev_tflops,
                pct_str(r.ev_dev_tflops, pk.bf16).c_str());
    std::printf("%s eval forward as evaluate() does today (logits of the scored half downloaded to the host): %.1f "
                "tokens/s\n",
                tag.c_str(), r.ev_host_tok_s);
    std::fflush(stdout);
  });

  // ---- eval-KL: `samq eval QUANT --base BASE` as the CLI runs it: evaluate() of a Q4_K_M-like
  // copy of this model against this model (two forwards per chunk, one of them on quantized
  // weights); per-token statistics on the device (the default on a GPU) and on the host (the old
  // path: logits downloaded); the statistics kernel alone.
  phase(r, "eval-kl", [&] {
    std::vector<int32_t> toks;
    for (int i = rc.warmup; i < rc.warmup + rc.timed; ++i) toks.insert(toks.end(), chunks[i].begin(), chunks[i].end());
    if (rc.timed < 2) toks.insert(toks.end(), chunks[0].begin(), chunks[0].end());
    double t0 = now_s();
    const std::shared_ptr<Model> qm = quantized_copy(m);
    const double t_quant = now_s() - t0;
    t0 = now_s();
    qm->prepare_weights(ops);
    ops.synchronize();
    std::printf("%s eval-KL: Q4_K_M-like copy made in %.2f s, uploaded in %.2f s\n", tag.c_str(), t_quant,
                now_s() - t0);
    const std::shared_ptr<const Model> self(&m, [](const Model*) {});
    const BaseLogits base = BaseLogits::from_model(self, ops);
    EvalOptions o;
    o.ctx = n;
    o.progress = false;
    o.max_chunks = 1;
    (void)evaluate(*qm, ops, toks, -1, o, &base);  // warm-up
    o.max_chunks = rc.timed;
    const EvalResult e = evaluate(*qm, ops, toks, -1, o, &base);
    r.kl_tok_s = e.tokens_per_second;
    r.kl_s_chunk = e.seconds / double(e.n_chunk);
    r.kl_tflops = 2 * f.fwd(dn) / r.kl_s_chunk / 1e12;
    {  // the quantized forward alone (device logits)
      Buffer<float> lg(ops, n * V);
      std::vector<double> tq;
      for (int i = 0; i < 3; ++i) {
        KvCache cache(*qm, n);
        Batch b;
        b.add(&cache, chunks[size_t(i) % chunks.size()], true);
        ForwardOptions fo;
        fo.logits_out = lg.data();
        ops.synchronize();
        const double ts = now_s();
        forward(*qm, ops, b, fo);
        ops.synchronize();
        if (i > 0) tq.push_back(now_s() - ts);
      }
      r.kl_qfwd_s = median(tq);
      std::printf("%s eval-KL: forward of the quantized copy alone %.2f ms/chunk (%.3g TFLOP/s; bf16 base model "
                  "%.2f ms)\n",
                  tag.c_str(), 1e3 * r.kl_qfwd_s, f.fwd(dn) / r.kl_qfwd_s / 1e12, 1e3 * r.ev_dev_s);
    }
    EvalOptions oh = o;
    oh.device_stats = 0;
    oh.max_chunks = std::min(rc.timed, 3);
    const EvalResult eh = evaluate(*qm, ops, toks, -1, oh, &base);
    r.kl_host_tok_s = eh.tokens_per_second;
    if (!ops.host_memory() && std::fabs(e.kld_mean - eh.kld_mean) > 1e-4 + 1e-3 * std::fabs(eh.kld_mean) &&
        e.n_chunk == eh.n_chunk)
      std::printf("%s   WARNING: device KLD %.6g differs from the host's %.6g\n", tag.c_str(), e.kld_mean, eh.kld_mean);
    // the statistics kernel alone: scored rows of one chunk's logits against themselves (dense base)
    const int64_t ns = n - 1 - n / 2;
    Buffer<float> ql(ops, (ns + 1) * V);
    {
      KvCache cache(m, n);
      Batch b;
      BatchSeq& s = b.add(&cache, chunks[0], true);
      s.logits_from = n / 2;
      ForwardOptions fo;
      fo.logits_out = ql.data();
      forward(m, ops, b, fo);
    }
    std::vector<int32_t> next(chunks[0].begin() + n / 2 + 1, chunks[0].end());
    Buffer<int32_t> gnext = Buffer<int32_t>::from_host(ops, next);
    Buffer<EvalTokenStats> out(ops, ns);
    EvalBase eb;
    eb.logits = ql.data();
    std::vector<double> ts;
    for (int rep = 0; rep < 6; ++rep) {
      ops.synchronize();
      const double t0 = now_s();
      ops.eval_token_stats(ql.data(), ns, V, gnext.data(), &eb, out.data());
      ops.synchronize();
      if (rep > 0) ts.push_back(now_s() - t0);
    }
    r.kl_kernel_s = median(ts);
    r.kl_kernel_gbs = 3.0 * 2.0 * 4.0 * double(ns) * double(V) / r.kl_kernel_s / 1e9;  // 3 passes over 2 arrays
    std::printf("%s eval-KL (evaluate() of the Q4_K_M-like copy against this model, 2 forwards per chunk, %lld "
                "chunks): %.2f "
                "ms/chunk, %.1f tokens/s, %.3g TFLOP/s = %s of bf16 peak; host statistics (old path) %.1f tokens/s; "
                "statistics kernel alone %.3f ms/chunk (%.0f GB/s over 3 passes); KLD %.3g, same top %.1f%%\n",
                tag.c_str(), (long long)e.n_chunk, 1e3 * r.kl_s_chunk, r.kl_tok_s, r.kl_tflops,
                pct_str(r.kl_tflops, pk.bf16).c_str(), r.kl_host_tok_s, 1e3 * r.kl_kernel_s, r.kl_kernel_gbs,
                e.kld_mean, e.same_top_pct);
    std::fflush(stdout);
  });

  // ---- hessian: forward + xtx per distinct input (collect_hessians' loop, logits on the device),
  // then collect_hessians itself
  phase(r, "hessian", [&] {
    MemSampler mem(rc.gpu, rc.device);
    {
      const auto& readers = activation_readers();
      std::map<std::string, Buffer<double>> sums;
      auto add = [&](const std::vector<std::string>& weights, const float* x, int64_t rows, int64_t cols) {
        const Tensor* w0 = nullptr;
        for (const auto& w : weights)
          if ((w0 = m.find(w))) break;
        if (!w0) return;
        Buffer<double>& s = sums[w0->name];
        if (s.empty()) {
          s = Buffer<double>(ops, cols * cols);
          s.zero();
        }
        bops.xtx_accumulate(x, rows, cols, s.data());
      };
      ForwardHooks hooks;
      hooks.on_activation = [&](std::string_view name, int layer, const float* x, int64_t rows, int64_t cols) {
        if (layer < 0) {
          if (name == "result_norm") add({"output.weight"}, x, rows, cols);
          return;
        }
        auto it = readers.find(std::string(name));
        if (it != readers.end()) add(layer_weight_names(layer, it->second), x, rows, cols);
      };
      const bool want_output = m.find("output.weight") != nullptr;
      Buffer<float> logits;
      ForwardOptions fo;
      fo.hooks = &hooks;
      fo.skip_logits = !want_output;
      if (want_output) fo.logits_out = logits.reserve(ops, n * V);
      auto run = [&](const std::vector<int32_t>& c) {
        KvCache cache(m, n);
        Batch b;
        b.add(&cache, c, want_output);
        forward(m, ops, b, fo);
      };
      for (int i = 0; i < rc.warmup; ++i) run(chunks[i]);
      ops.synchronize();
      const double t0 = now_s();
      for (int i = rc.warmup; i < rc.warmup + rc.timed; ++i) run(chunks[i]);
      ops.synchronize();
      const double secs = now_s() - t0;
      const double per_chunk = secs / rc.timed;
      r.hs_tok_s = dn * rc.timed / secs;
      r.hs_full_tflops = f.hess_full_per_token() * r.hs_tok_s / 1e12;
      r.hs_syrk_tflops = f.hess_syrk_per_token() * r.hs_tok_s / 1e12;
      // xtx share: this loop minus a forward (the eval forward with device logits; without the head
      // when the model has no head Hessian, scaled by FLOPs)
      const double fwd_est = r.ev_dev_s * f.hess_fwd(dn) / f.fwd(dn);  // 0 when eval failed
      r.hs_xtx_s = fwd_est > 0 ? per_chunk - fwd_est : 0.0;
      r.hs_xtx_syrk_tflops = r.hs_xtx_s > 0 ? f.hess_syrk_per_token() * dn / r.hs_xtx_s / 1e12 : 0;
      std::printf("%s hessian (forward + xtx_accumulate per input in FP64 - on CUDA x to double + cublasDsyrk diagonal blocks + Dgemm; "
                  "logits kept in backend memory): %.2f ms/chunk, %.1f tokens/s; x^T x %.3g TFLOP/s full-product convention (2 c^2), "
                  "Dsyrk %.3g TFLOP/s = %s of the f64 DGEMM peak\n",
                  tag.c_str(), 1e3 * per_chunk, r.hs_tok_s, r.hs_full_tflops, r.hs_syrk_tflops,
                  pct_str(r.hs_syrk_tflops, pk.f64).c_str());
      std::printf("%s   xtx alone ~ %.2f ms/chunk (this loop minus the eval forward %.2f ms) -> Dsyrk ~%.3g TFLOP/s "
                  "= %s of DGEMM peak, %s of the measured DSYRK (14336 x 512) rate\n",
                  tag.c_str(), 1e3 * r.hs_xtx_s, 1e3 * fwd_est, r.hs_xtx_syrk_tflops,
                  pct_str(r.hs_xtx_syrk_tflops, pk.f64).c_str(), pct_str(r.hs_xtx_syrk_tflops, pk.dsyrk).c_str());
      std::fflush(stdout);
    }
    if (rc.run_hessian_collect) {
      // collect_hessians (host logits when the model has an output head; the sums downloaded and
      // mirrored at the end): one chunk, then the timed chunks; the difference gives the per-chunk
      // cost, the rest is the fixed cost of a call (allocation, download, mirror).
      const std::vector<std::vector<int32_t>> one(chunks.begin(), chunks.begin() + 1);
      const std::vector<std::vector<int32_t>> timed(chunks.begin() + rc.warmup, chunks.end());
      double t0 = now_s();
      { Hessians h1 = collect_hessians(m, bops, one, false); }
      ops.synchronize();
      const double t_one = now_s() - t0;
      t0 = now_s();
      double count = 0;
      {
        Hessians hk = collect_hessians(m, bops, timed, false);
        for (const auto& e : hk.entries) count = std::max(count, e.count);
      }
      ops.synchronize();
      const double t_k = now_s() - t0;
      r.hc_total_s = t_k;
      r.hc_total_tok_s = dn * rc.timed / t_k;
      if (rc.timed > 1 && t_k > t_one) {
        const double per = (t_k - t_one) / (rc.timed - 1);
        r.hc_marginal_tok_s = dn / per;
        r.hc_fixed_s = t_one - per;
      }
      std::printf("%s collect_hessians: %d chunks in %.3f s = %.1f tokens/s overall; per extra chunk %.1f tokens/s; "
                  "fixed cost per call (allocation, download + mirror of the sums) ~%.2f s%s\n",
                  tag.c_str(), rc.timed, t_k, r.hc_total_tok_s, r.hc_marginal_tok_s, r.hc_fixed_s,
                  count == dn * rc.timed ? "" : "  WARNING: token count mismatch");
      std::fflush(stdout);
    }
    r.mem_hessian = mem.finish();
    if (rc.gpu) std::printf("%s   device memory peak during hessian: %.2f GiB\n", tag.c_str(), double(r.mem_hessian) / kGiB);
  });
}

// refcode's analyze loop on the CPU (its own model copy, prepared for cpu_ops()).
void run_cpu_analyze(Result& r, const std::string& path, int64_t ctx, int timed, const Peaks&) {
  const std::string tag = "[" + r.label + "]";
  auto m = Model::load(path, cpu_ops());
  const FlopModel f(*m);
  const auto chunks = random_chunks(1 + timed, ctx, m->hparams.n_vocab, 0xc0ffee + uint64_t(m->hparams.n_vocab));
  SensitivityAccumulator acc(*m, cpu_backward_ops());
  acc.add_chunk(chunks[0], 0);
  const double t0 = now_s();
  for (int i = 1; i <= timed; ++i) acc.add_chunk(chunks[i], i);
  const double secs = now_s() - t0;
  r.cpu_threads = num_threads();
  r.cpu_tok_s = double(ctx) * timed / secs;
  r.cpu_gflops = f.analyze(double(ctx)) * timed / secs / 1e9;
  std::printf("%s CPU analyze (cpu_backward_ops, %d threads): %d chunks in %.2f s = %.1f tokens/s, %.1f GFLOP/s; "
              "GPU/CPU ratio %s\n",
              tag.c_str(), r.cpu_threads, timed, secs, r.cpu_tok_s, r.cpu_gflops,
              r.an_tok_s > 0 ? (std::to_string(int(std::lround(r.an_tok_s / r.cpu_tok_s))) + "x").c_str() : "n/a");
  std::fflush(stdout);
}

double g_start = 0;  // process start (now_s), for the total run time

void print_summary(const std::vector<Result>& rs, const Peaks& pk, const std::string& device) {
  std::printf("\n==================== bench_cuda summary ====================\n");
  std::printf("device %s | peaks (cuBLAS 8192^3, median): bf16 %.1f, f32 (no TF32) %.1f, f64 %.1f TFLOP/s; DSYRK "
              "14336x512 %.1f TFLOP/s\n",
              device.c_str(), pk.bf16, pk.f32, pk.f64, pk.dsyrk);
  std::printf("useful FLOPs: fwd 2P+attn, each bwd 4P+2attn, analyze = fwd + 2 bwd; hessian vs FP64 (Dsyrk "
              "triangle c(c+1)/token/input); synthetic model = random weights, speed only\n");
  std::printf("%-30s %-38s %12s %9s %8s\n", "model", "phase", "tokens/s", "TFLOP/s", "% peak");
  for (const Result& r : rs) {
    const char* name = r.label.c_str();
    auto row = [&](const char* phase, double tok, double tf, const std::string& p) {  // tf 0: not shown
      if (tok <= 0) return;
      if (tf > 0)
        std::printf("%-30s %-38s %12.1f %9.3g %8s\n", name, phase, tok, tf, p.c_str());
      else
        std::printf("%-30s %-38s %12.1f %9s %8s\n", name, phase, tok, "-", p.c_str());
      name = "";
    };
    row("analyze (full Fisher, fwd+2 bwd)", r.an_tok_s, r.an_tflops, pct_str(r.an_tflops, pk.bf16, " b"));
    if (r.an_s_chunk > 0 && r.fwd_s > 0) {
      std::printf("%-30s %-38s %.2f = fwd %.2f + 2 x (CE %.2f + zero %.2f + bwd %.2f) + stats %.2f\n", name,
                  "  ms per analyze chunk", 1e3 * r.an_s_chunk, 1e3 * r.fwd_s, 1e3 * r.loss_s, 1e3 * r.zero_s,
                  1e3 * r.bwd_s, 1e3 * r.stats_s);
      name = "";
    }
    row("hessian loop (fwd + Dsyrk, FP64)", r.hs_tok_s, r.hs_syrk_tflops, pct_str(r.hs_syrk_tflops, pk.f64, " d"));
    if (r.hs_xtx_s > 0)
      std::printf("%-30s %-38s %12s %9.3g %8s\n", name, "  xtx alone (loop - eval fwd), est.", "",
                  r.hs_xtx_syrk_tflops, pct_str(r.hs_xtx_syrk_tflops, pk.f64, " d").c_str());
    row("collect_hessians (per extra chunk)", r.hc_marginal_tok_s, 0, "");
    row("collect_hessians (overall)", r.hc_total_tok_s, 0, "");
    row("eval fwd (device logits)", r.ev_dev_tok_s, r.ev_dev_tflops, pct_str(r.ev_dev_tflops, pk.bf16, " b"));
    row("eval fwd (host logits download)", r.ev_host_tok_s, 0, "");
    row("eval-KL vs base model (2 fwd+stats)", r.kl_tok_s, r.kl_tflops, pct_str(r.kl_tflops, pk.bf16, " b"));
    row("eval-KL, host statistics (old)", r.kl_host_tok_s, 0, "");
    if (r.cpu_tok_s > 0) {
      row("CPU analyze", r.cpu_tok_s, r.cpu_gflops / 1e3, "");
      if (r.an_tok_s > 0) std::printf("%-30s %-38s %11.1fx\n", name, "  GPU/CPU analyze ratio", r.an_tok_s / r.cpu_tok_s);
    }
    if (r.fwd_s > 0 || r.kl_s_chunk > 0) {
      // Where one chunk's time goes, per phase.
      std::printf("%-30s %-38s %10s %9s %8s  %s\n", name, "  phase breakdown (per chunk)", "ms", "TFLOP/s", "% peak",
                  "note");
      name = "";
      auto ph = [&](const char* label, double sec, double tflops, const std::string& note) {
        if (sec <= 0) return;
        char tf[32] = "-";
        if (tflops > 0) std::snprintf(tf, sizeof tf, "%.3g", tflops);
        std::printf("%-30s %-38s %10.2f %9s %8s  %s\n", "", label, 1e3 * sec, tf,
                    tflops > 0 ? pct_str(tflops, pk.bf16, " b").c_str() : "", note.c_str());
      };
      char note[200];
      ph("    forward", r.fwd_s, r.fwd_tflops, "");
      ph("    backward (x2 per analyze chunk)", r.bwd_s, r.bwd_tflops, "each");
      std::snprintf(note, sizeof note, "CE %.2f + zero %.2f ms, each", 1e3 * r.loss_s, 1e3 * r.zero_s);
      ph("    softmax-CE + zero grads (x2)", r.loss_s + r.zero_s, 0, note);
      std::snprintf(note, sizeof note, "%.0f%% of the analyze chunk", pct(r.stats_s, r.an_s_chunk));
      ph("    statistics & rest (analyze - above)", r.stats_s, 0, note);
      std::snprintf(note, sizeof note, "%.3g G elements, %.0f GB/s", r.st_elems / 1e9, r.st_old_gbs);
      ph("      g2 + norms as fisher.cpp (x2)", r.st_old_s, 0, note);
      std::snprintf(note, sizeof note, "%.0f GB/s (sq_accumulate_sum, one download)", r.st_fused_gbs);
      ph("      g2 + norms fused (x2)", r.st_fused_s, 0, note);
      std::snprintf(note, sizeof note, "%.0f GB/s", r.st_colsq_gbs);
      ph("      col_sq of the hooks (dy, x)", r.st_colsq_s, 0, note);
      std::snprintf(note, sizeof note, "%.1f tokens/s (host statistics: %.1f); kernel alone %.3f ms, %.0f GB/s",
                    r.kl_tok_s, r.kl_host_tok_s, 1e3 * r.kl_kernel_s, r.kl_kernel_gbs);
      ph("    eval-KL (2 forwards + statistics)", r.kl_s_chunk, r.kl_tflops, note);
      ph("      of which quantized forward alone", r.kl_qfwd_s, 0, "Q4_K/Q6_K weights: dequantized tiles + bf16x3 GEMMs");
    }
    const size_t mem = std::max({r.mem_analyze, r.mem_split, r.mem_hessian, r.mem_eval});
    if (mem)
      std::printf("%-30s %-38s %.2f GiB peak in use (weights %.2f GiB; before models %.2f GiB; analyze %.2f, "
                  "split %.2f, eval %.2f, hessian %.2f)\n",
                  name, "device memory", double(mem) / kGiB, r.weight_bytes / kGiB, double(r.mem_base) / kGiB,
                  double(r.mem_analyze) / kGiB, double(r.mem_split) / kGiB, double(r.mem_eval) / kGiB,
                  double(r.mem_hessian) / kGiB);
    if (!r.ok) std::printf("%-30s FAILED: %s\n", r.label.c_str(), r.error.c_str());
  }
  std::printf("(%% peak: b = of the bf16 GEMM peak, d = of the f64 DGEMM peak; memory = cudaMemGetInfo total-free, "
              "incl. the CUDA context and the backend's cached temporaries)\n");
  std::printf("total run time %.1f s\n", now_s() - g_start);
}

int cpu_smoke(const Options& o) {
  std::printf("bench_cuda --cpu-smoke: every phase on the CPU, tiny synthetic model (checks this program, not a "
              "benchmark); %d threads\n",
              num_threads());
  Peaks pk;
  std::vector<Result> rs;
  {
    Result r;
    r.label = bench::SyntheticConfig::tiny().label;
    r.failed_phase = "build";
    try {
      const double t0 = now_s();
      auto m = bench::make_synthetic_model(bench::SyntheticConfig::tiny());
      m->prepare_weights(cpu_ops());
      std::printf("[%s] built in %.2f s (random BF16 weights, trained-like statistics: speed only)\n",
                  r.label.c_str(), now_s() - t0);
      // FLOP check against the closed form of this shape
      const auto& h = m->hparams;
      const double P_expect = double(h.n_layer) * double(h.n_embd) *
                                  (2.0 * double(h.n_embd_q()) + 2.0 * double(h.n_embd_kv()) + 3.0 * double(h.n_ff)) +
                              double(h.n_vocab) * double(h.n_embd);
      const FlopModel f(*m);
      std::printf("[%s] P = %.0f, closed form %.0f: %s\n", r.label.c_str(), f.P, P_expect,
                  f.P == P_expect ? "ok" : "MISMATCH");
      RunCfg rc;
      rc.ctx = o.ctx == 512 ? 128 : o.ctx;
      rc.warmup = 1;
      rc.timed = o.chunks > 0 ? o.chunks : 2;
      r.failed_phase = "run";
      run_model(r, *m, cpu_backward_ops(), rc, pk);
    } catch (const std::exception& e) {
      r.ok = false;
      if (!r.error.empty()) r.error += "; ";
      r.error += r.failed_phase + ": " + e.what();
      std::printf("[%s] FAILED in %s: %s\n", r.label.c_str(), r.failed_phase.c_str(), e.what());
    }
    rs.push_back(std::move(r));
  }
  {
    // The 8B-shape FLOP model without building it (hparams only).
    Model m8;
    auto c = bench::SyntheticConfig::llama3_8b(o.layers);
    m8.hparams.n_layer = c.n_layer;
    m8.hparams.n_head = c.n_head;
    m8.hparams.head_dim = c.head_dim;
    auto shape = [&](Tensor& x, const char* nm, int64_t rows, int64_t cols) {
      x.name = nm;
      x.type = GgmlType::BF16;
      x.rows = rows;
      x.cols = cols;
      x.data = reinterpret_cast<const uint8_t*>(&m8);  // present(); never read
    };
    shape(m8.weights.token_embd, "token_embd.weight", c.n_vocab, c.n_embd);
    shape(m8.weights.output, "output.weight", c.n_vocab, c.n_embd);
    for (int64_t l = 0; l < c.n_layer; ++l) {
      LayerWeights L;
      shape(L.attn_q, "q", c.n_head * c.head_dim, c.n_embd);
      shape(L.attn_k, "k", c.n_head_kv * c.head_dim, c.n_embd);
      shape(L.attn_v, "v", c.n_head_kv * c.head_dim, c.n_embd);
      shape(L.attn_output, "o", c.n_embd, c.n_head * c.head_dim);
      shape(L.ffn_gate, "g", c.n_ff, c.n_embd);
      shape(L.ffn_up, "u", c.n_ff, c.n_embd);
      shape(L.ffn_down, "d", c.n_embd, c.n_ff);
      m8.weights.layers.push_back(std::move(L));
    }
    print_flop_model("[" + c.label + " (flops only)]", FlopModel(m8), 512);
  }
  if (!o.skip_cpu && (o.model_only.empty() || o.model_only == "refcode")) {
    Result r;
    r.label = "refcode-32m";
    phase(r, "cpu analyze", [&] { run_cpu_analyze(r, o.refcode, o.ctx, 1, pk); });
    rs.push_back(std::move(r));
  }
  print_summary(rs, pk, "cpu");
  for (const auto& r : rs)
    if (!r.ok) return 1;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  g_start = now_s();
  const Options o = parse(argc, argv);
  set_num_threads(o.threads);
  Progress::set_quiet(true);
  if (o.cpu_smoke) return cpu_smoke(o);
#if !BENCH_CUDA
  std::printf("bench_cuda: samq was built without CUDA (SAMQ_HAVE_CUDA unset): nothing to measure (skipped)\n");
  return 77;
#else
  const int n_dev = cuda_device_count();
  if (n_dev <= 0) {
    std::printf("bench_cuda: no CUDA device (cuda_device_count() = 0): nothing to measure (skipped)\n");
    return 77;
  }
  if (o.device >= n_dev) {
    std::printf("bench_cuda: --device %d: only %d CUDA device(s)\n", o.device, n_dev);
    return 2;
  }
  int rc_exit = 0;
  Peaks pk;
  std::string device = "cuda:" + std::to_string(o.device);
  size_t base = 0;
  try {
    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, o.device));
    int drv = 0, rtv = 0;
    CK(cudaDriverGetVersion(&drv));
    CK(cudaRuntimeGetVersion(&rtv));
    int cublas_v = 0;
    {
      cublasHandle_t h = nullptr;
      CB(cublasCreate(&h));
      (void)cublasGetVersion(h, &cublas_v);
      (void)cublasDestroy(h);
    }
    std::printf("bench_cuda: %s, sm_%d%d, %d SMs, %.1f GiB, driver %d, runtime %d, cuBLAS %d; host threads %d\n",
                prop.name, prop.major, prop.minor, prop.multiProcessorCount, double(prop.totalGlobalMem) / kGiB, drv,
                rtv, cublas_v, num_threads());
    std::printf("GEMM peaks (same run):\n");
    std::fflush(stdout);
    pk = measure_peaks(o.device);
  } catch (const std::exception& e) {
    std::printf("GEMM peak measurement FAILED: %s (percentages of peak will read n/a)\n", e.what());
    rc_exit = 1;
  }
  try {
    // Opens the backend's device (stream, cuBLAS handle, pool) before the baseline is read.
    cuda_ops(o.device).synchronize();
    (void)cuda_backward_ops(o.device);
    device = cuda_ops(o.device).device();
    base = device_used_bytes(o.device);
    std::printf("device memory in use before the models (context, cuBLAS handles): %.2f GiB\n", double(base) / kGiB);
  } catch (const std::exception& e) {
    std::printf("opening the CUDA backend FAILED: %s\n", e.what());
    return 1;
  }
  std::fflush(stdout);

  std::vector<Result> rs;
  if (o.model_only.empty() || o.model_only == "refcode") {
    Result r;
    r.label = "refcode-32m";
    r.mem_base = base;
    try {
      if (!std::filesystem::exists(o.refcode)) fail("{}: not found (--refcode DIR)", o.refcode);
      r.failed_phase = "load";
      const double t0 = now_s();
      auto m = Model::load(o.refcode, cuda_ops(o.device));
      cuda_ops(o.device).synchronize();
      std::printf("\n[%s] loaded from %s (HF %s) onto %s in %.2f s\n", r.label.c_str(), o.refcode.c_str(),
                  m->hparams.source_dtype.c_str(), device.c_str(), now_s() - t0);
      RunCfg rc;
      rc.ctx = o.ctx;
      rc.warmup = o.warmup;
      rc.timed = o.chunks > 0 ? o.chunks : 16;
      rc.gpu = true;
      rc.device = o.device;
      r.failed_phase = "run";
      run_model(r, *m, cuda_backward_ops(o.device), rc, pk);
      m.reset();
      if (!o.skip_cpu) phase(r, "cpu analyze", [&] { run_cpu_analyze(r, o.refcode, o.ctx, o.cpu_chunks, pk); });
    } catch (const std::exception& e) {
      r.ok = false;
      if (!r.error.empty()) r.error += "; ";
      r.error += r.failed_phase + ": " + e.what();
      std::printf("[%s] FAILED in %s: %s\n", r.label.c_str(), r.failed_phase.c_str(), e.what());
    }
    std::fflush(stdout);
    rs.push_back(std::move(r));
  }
  if (o.model_only.empty() || o.model_only == "synth8b") {
    const auto cfg = bench::SyntheticConfig::llama3_8b(o.layers);
    Result r;
    r.label = cfg.label;
    r.mem_base = base;
    try {
      r.failed_phase = "build";
      double t0 = now_s();
      auto m = bench::make_synthetic_model(cfg);
      const double t_build = now_s() - t0;
      t0 = now_s();
      r.failed_phase = "upload";
      m->prepare_weights(cuda_ops(o.device));
      cuda_ops(o.device).synchronize();
      std::printf("\n[%s] synthetic Llama-3-8B shape (n_embd 4096, 32/8 heads x 128, n_ff 14336, n_vocab 128256, "
                  "rope theta 5e5, untied head), %d layers: RANDOM BF16 weights with trained-like statistics "
                  "(per-row scales, outlier input columns, norms ~1) - for speed only; built in %.2f s (%d "
                  "threads), uploaded in %.2f s\n",
                  r.label.c_str(), o.layers, t_build, num_threads(), now_s() - t0);
      RunCfg rc;
      rc.ctx = o.ctx;
      rc.warmup = o.warmup;
      rc.timed = o.chunks > 0 ? o.chunks : 8;
      rc.gpu = true;
      rc.device = o.device;
      r.failed_phase = "run";
      run_model(r, *m, cuda_backward_ops(o.device), rc, pk);
    } catch (const std::exception& e) {
      r.ok = false;
      if (!r.error.empty()) r.error += "; ";
      r.error += r.failed_phase + ": " + e.what();
      std::printf("[%s] FAILED in %s: %s\n", r.label.c_str(), r.failed_phase.c_str(), e.what());
    }
    std::fflush(stdout);
    rs.push_back(std::move(r));
  }
  print_summary(rs, pk, device);
  for (const auto& r : rs)
    if (!r.ok) rc_exit = 1;
  return rc_exit;
#endif
}
