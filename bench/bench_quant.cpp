// Quantization and dequantization throughput per ggml type, in MB/s of f32 data (4 bytes per
// weight, input for quantize, output for dequantize), on real weights: the `rows` of
// ../shared/golden/quant-golden.gguf (rows of refcode-32m plus synthetic rows) tiled to a
// (rows x 1536) tensor, or Gaussian weights when that file is absent.
//   bench_quant [--rows N] [--min-seconds S] [--types q4_K,q6_K,...]
// Columns: quantize without / with the importance vector, dequantize with the scalar
// reference and with the SIMD path, each on 1 thread and on all threads.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "format/gguf.h"
#include "quant/dequant_fast.h"
#include "quant/quantize.h"

using namespace samq;

namespace {

struct Input {
  int64_t rows = 0, cols = 1536;
  std::vector<float> x, imatrix;
  std::string source;
};

Input load_input(int64_t rows) {
  Input in;
  in.rows = rows;
  in.x.resize(size_t(rows * in.cols));
  in.imatrix.assign(size_t(in.cols), 1.f);
  const std::string path = std::string(SAMQ_SHARED_DIR) + "/golden/quant-golden.gguf";
  try {
    GgufFile f = GgufFile::open(path);
    const auto& r = f.tensor("rows");
    const auto& im = f.tensor("imatrix");
    if (r.cols() != in.cols) fail("unexpected width {}", r.cols());
    const auto* src = reinterpret_cast<const float*>(r.data);
    const int64_t n = r.rows() * r.cols();
    for (int64_t i = 0; i < rows * in.cols; ++i) in.x[size_t(i)] = src[i % n];
    std::memcpy(in.imatrix.data(), im.data, size_t(in.cols) * 4);
    in.source = path + " (rows tiled)";
  } catch (const std::exception& e) {
    std::mt19937 rng(1);
    std::normal_distribution<float> g(0.f, 0.02f);
    for (auto& v : in.x) v = g(rng);
    in.source = std::string("Gaussian weights (") + e.what() + ")";
  }
  return in;
}

// Runs fn repeatedly for at least min_s seconds (and 3 times); returns MB/s of the fastest
// call, which is the stable figure on a shared, loaded machine.
double throughput(const std::function<void()>& fn, double bytes, double min_s) {
  using clk = std::chrono::steady_clock;
  fn();  // warm-up
  double best = 1e300, total = 0;
  int iters = 0;
  while (total < min_s || iters < 3) {
    const auto t0 = clk::now();
    fn();
    const double el = std::chrono::duration<double>(clk::now() - t0).count();
    best = std::min(best, el);
    total += el;
    ++iters;
  }
  return bytes / best / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 2048;
  double min_s = 0.3;
  std::vector<GgmlType> types = {GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0,
                                 GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q2_K,
                                 GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
                                 GgmlType::IQ4_NL, GgmlType::IQ4_XS};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rows" && i + 1 < argc) rows = std::atoll(argv[++i]);
    else if (a == "--min-seconds" && i + 1 < argc) min_s = std::atof(argv[++i]);
    else if (a == "--types" && i + 1 < argc) {
      types.clear();
      std::string s = argv[++i];
      size_t p = 0;
      while (p <= s.size()) {
        const size_t q = s.find(',', p);
        const std::string name = s.substr(p, q == std::string::npos ? std::string::npos : q - p);
        auto t = ggml_type_from_name(name);
        if (!t || !quant_supported(*t)) {
          std::fprintf(stderr, "bench_quant: unknown or unsupported type '%s'\n", name.c_str());
          return 2;
        }
        types.push_back(*t);
        if (q == std::string::npos) break;
        p = q + 1;
      }
    } else {
      std::fprintf(stderr, "usage: bench_quant [--rows N] [--min-seconds S] [--types a,b,...]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  const Input in = load_input(rows);
  set_num_threads(0);
  const int all = num_threads();
  const double mb = double(in.x.size()) * 4;
  std::printf("input: %s, %lld x %lld f32 (%.1f MB); threads: 1 and %d; SIMD dequant: %s\n",
              in.source.c_str(), (long long)in.rows, (long long)in.cols, mb / 1e6, all,
              dequant_simd_enabled() ? "AVX2" : "none");
  std::printf("%-7s %6s | %9s %9s | %9s %9s | %9s %9s %9s %9s\n", "type", "bpw", "quant 1t",
              "quant Nt", "q+imx 1t", "q+imx Nt", "deq ref1t", "deq simd1", "deq ref Nt",
              "deq simdN");
  std::vector<uint8_t> q;
  std::vector<float> y(in.x.size());
  for (GgmlType t : types) {
    q.resize(size_t(in.rows * ggml_row_size(t, in.cols)));
    double r[8];
    int k = 0;
    for (const float* qw : {static_cast<const float*>(nullptr), in.imatrix.data()})
      for (int nt : {1, all}) {
        set_num_threads(nt);
        r[k++] = throughput([&] { quantize_tensor(t, in.x.data(), q.data(), in.rows, in.cols, qw); }, mb, min_s);
      }
    for (int nt : {1, all})
      for (bool simd : {false, true}) {
        set_num_threads(nt);
        set_dequant_simd(simd);
        r[k++] = throughput([&] { dequantize_tensor(t, q.data(), y.data(), in.rows, in.cols); }, mb, min_s);
      }
    set_dequant_simd(true);
    std::printf("%-7s %6.3f | %9.1f %9.1f | %9.1f %9.1f | %9.1f %9.1f %9.1f %9.1f\n",
                std::string(ggml_type_name(t)).c_str(), ggml_bits_per_weight(t), r[0], r[1], r[2],
                r[3], r[4], r[5], r[6], r[7]);
    std::fflush(stdout);
  }
  std::printf("(MB/s of f32 weights, fastest call; quantize = input bytes, dequantize = output bytes)\n");
  return 0;
}
