// The CUDA op tables (backend/cuda/cuda_backend.h) against the CPU: every forward op against
// reference_ops() and cpu_ops(), every backward op against cpu_backward_ops(), on odd shapes
// (non-multiples of 32, GQA groups 2 and 4, n_kv > n_tokens with position offsets, negative RoPE
// positions), with fresh random data and outputs poisoned with NaN before each call so that an
// element left unwritten fails the comparison. Errors are relative: max|gpu - cpu| / max|cpu|.
// The tiled and chunked paths (weight tiles, bf16 token blocks, attention chunks, xtx chunks)
// are forced on small shapes through SAMQ_CUDA_SCRATCH_BYTES / SAMQ_CUDA_ATTN_BYTES.
// Every test skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend/buffer.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/ops.h"
#include "backend/ops_backward.h"
#include "common/random.h"
#include "core/error.h"
#include "core/fp16.h"
#include "quant/quantize.h"

using namespace samq;

namespace {

using test::randn;

#define SKIP_WITHOUT_GPU() \
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU"

const Ops& gpu() { return cuda_ops(0); }
const BackwardOps& gpu_grad() { return cuda_backward_ops(0); }

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Bounds (relative to max |reference|).
constexpr double kFwd = 1e-5;      // f32 forward ops; bf16/f16 weights (exact products)
constexpr double kQuant = 1e-4;    // quantized-weight matmul
constexpr double kBwd = 1e-4;      // backward ops
constexpr double kOrdered = 1e-6;  // reductions in the CPU's own order (bias, embedding, ...)

template <class T>
Buffer<T> dev(const std::vector<T>& v) {
  return Buffer<T>::from_host(gpu(), v);
}
Buffer<float> poisoned(int64_t n) { return dev(std::vector<float>(static_cast<size_t>(n), kNaN)); }

// max |a - ref| / max |ref|; infinity when a has a non-finite value where ref is finite (an
// element not written) or the sizes differ.
template <class T>
double rel_err(const std::vector<T>& a, const std::vector<T>& ref) {
  if (a.size() != ref.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(double(ref[i]))) continue;
    if (!std::isfinite(double(a[i]))) return INFINITY;
    num = std::max(num, std::fabs(double(a[i]) - double(ref[i])));
    den = std::max(den, std::fabs(double(ref[i])));
  }
  if (den == 0) return num == 0 ? 0.0 : INFINITY;
  return num / den;
}

// Sets an environment variable for one scope.
class EnvGuard {
 public:
  EnvGuard(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) {
      had_ = true;
      old_ = old;
    }
    setenv(name, value.c_str(), 1);
  }
  ~EnvGuard() {
    if (had_) setenv(name_, old_.c_str(), 1);
    else unsetenv(name_);
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

const GgmlType kAllTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0,   GgmlType::Q4_0,
                              GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q2_K,   GgmlType::Q3_K,
                              GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_NL, GgmlType::IQ4_XS};

bool is_float_type(GgmlType t) { return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16; }

// A weight of `type` from Gaussian values: host bytes (the CPU's view) and the device copy.
struct TestWeight {
  std::vector<uint8_t> bytes;
  WeightView host;
  std::unique_ptr<PreparedWeight> prepared;
  WeightView device() const {
    WeightView v = host;
    v.prepared = prepared.get();
    return v;
  }
};

TestWeight make_weight(GgmlType type, int64_t rows, int64_t cols, uint32_t seed, float sd = 0.5f) {
  const auto src = randn(size_t(rows * cols), seed, sd);
  TestWeight w;
  const int64_t rb = ggml_row_size(type, cols);
  w.bytes.resize(size_t(rows * rb));
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* dst = &w.bytes[size_t(r * rb)];
    const float* s = &src[size_t(r * cols)];
    if (type == GgmlType::F32)
      std::memcpy(dst, s, static_cast<size_t>(cols) * 4);
    else if (type == GgmlType::F16)
      for (int64_t c = 0; c < cols; ++c) reinterpret_cast<uint16_t*>(dst)[c] = f32_to_fp16(s[c]);
    else if (type == GgmlType::BF16)
      for (int64_t c = 0; c < cols; ++c) reinterpret_cast<uint16_t*>(dst)[c] = f32_to_bf16(s[c]);
    else
      quantize_row(type, s, dst, cols, nullptr);
  }
  w.host = {type, rows, cols, w.bytes.data(), rb};
  w.prepared = gpu().prepare_weight(w.host);
  return w;
}

std::string type_name(GgmlType t) { return std::string(ggml_type_name(t)); }

// ---------------------------------------------------------------- memory

TEST(CudaOps, MemoryRoundTrips) {
  SKIP_WITHOUT_GPU();
  const Ops& g = gpu();
  EXPECT_FALSE(g.host_memory());
  EXPECT_EQ(g.device().rfind("cuda:0 (", 0), 0u) << g.device();
  EXPECT_STREQ(g.name(), "cuda");
  const auto v = randn(1000, 1);
  Buffer<float> a = dev(v);
  EXPECT_EQ(a.to_host(), v);
  Buffer<float> b(g, 1000);
  g.copy(b.data(), a.data(), 1000 * sizeof(float));
  EXPECT_EQ(b.to_host(), v);
  b.zero();
  EXPECT_EQ(b.to_host(), std::vector<float>(1000, 0.0f));
  // Overlapping copy has memmove semantics.
  g.copy(a.data() + 10, a.data(), 500 * sizeof(float));
  auto h = a.to_host();
  std::vector<float> want = v;
  std::memmove(want.data() + 10, v.data(), 500 * sizeof(float));
  EXPECT_EQ(h, want);
  // Partial upload/download at an offset.
  a.upload(v.data() + 900, 50, 100);
  std::vector<float> part(50);
  a.download(part.data(), 50, 100);
  EXPECT_EQ(part, std::vector<float>(v.begin() + 900, v.begin() + 950));
  g.synchronize();
}

TEST(CudaOps, OutOfMemoryIsAClearError) {
  SKIP_WITHOUT_GPU();
  try {
    void* p = gpu().alloc(static_cast<size_t>(1) << 52);
    gpu().release(p);
    FAIL() << "a 4 PiB allocation succeeded";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("out of device memory"), std::string::npos) << m;
    EXPECT_NE(m.find("4503599627370496"), std::string::npos) << m;
  }
  // The device still works afterwards.
  Buffer<float> a = dev(std::vector<float>{1, 2, 3});
  EXPECT_EQ(a.to_host(), (std::vector<float>{1, 2, 3}));
}

TEST(CudaOps, PreparedOneDimensionalTensorIsReadable) {
  SKIP_WITHOUT_GPU();
  const auto v = randn(333, 2);
  WeightView w{GgmlType::F32, 1, 333, v.data(), 333 * 4};
  auto p = gpu().prepare_weight(w);
  ASSERT_TRUE(p);
  ASSERT_NE(p->backend_data(), nullptr);
  std::vector<float> back(333);
  gpu().download(back.data(), p->backend_data(), 333 * sizeof(float));
  EXPECT_EQ(back, v);
}

TEST(CudaOps, RoundF16MatchesTheCpuBitForBit) {
  SKIP_WITHOUT_GPU();
  auto v = randn(4099, 3, 100.0f);
  // Overflow, subnormals, ties and exact values.
  const float special[] = {70000.0f, -65520.0f, 65519.0f, 1e-7f, -3e-8f, 6e-8f, 1.0f + 1.0f / 2048.0f,
                           1.0f + 3.0f / 2048.0f, 0.0f, -0.0f, 1e-30f};
  for (size_t i = 0; i < std::size(special); ++i) v[i] = special[i];
  Buffer<float> x = dev(v);
  gpu().round_f16(x.data(), int64_t(v.size()));
  auto want = v;
  reference_ops().round_f16(want.data(), int64_t(want.size()));
  const auto got = x.to_host();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(f32_to_bits(got[i]), f32_to_bits(want[i])) << "i=" << i << " x=" << v[i];
}

// ---------------------------------------------------------------- weights: get_rows, matmul

TEST(CudaOps, GetRowsEveryTypeEqualsDequantizeWeightRow) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 37, cols = 768;
  const std::vector<int32_t> ids = {0, 36, 5, 5, 17, 1, 36, 20, 11};
  const int64_t n = int64_t(ids.size());
  Buffer<int32_t> dids = dev(ids);
  uint32_t seed = 100;
  for (GgmlType t : kAllTypes) {
    const TestWeight w = make_weight(t, rows, cols, seed++);
    Buffer<float> out = poisoned(n * cols);
    gpu().get_rows(w.device(), dids.data(), n, out.data());
    const auto got = out.to_host();
    std::vector<float> want(size_t(n * cols));
    for (int64_t i = 0; i < n; ++i) dequantize_weight_row(w.host, ids[static_cast<size_t>(i)], &want[size_t(i * cols)]);
    int64_t mismatches = 0;
    for (size_t i = 0; i < got.size(); ++i) mismatches += f32_to_bits(got[i]) != f32_to_bits(want[i]);
    EXPECT_EQ(mismatches, 0) << type_name(t);
  }
}

TEST(CudaOps, GetRowsRejectsBadIdsAndUnpreparedWeights) {
  SKIP_WITHOUT_GPU();
  const TestWeight w = make_weight(GgmlType::Q4_K, 10, 256, 7);
  Buffer<int32_t> bad = dev(std::vector<int32_t>{0, 10});
  Buffer<float> out(gpu(), 2 * 256);
  EXPECT_THROW(gpu().get_rows(w.device(), bad.data(), 2, out.data()), Error);
  Buffer<int32_t> ok = dev(std::vector<int32_t>{0, 9});
  try {
    gpu().get_rows(w.host, ok.data(), 2, out.data());
    FAIL() << "unprepared weight accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("was not uploaded"), std::string::npos) << e.what();
  }
}

TEST(CudaOps, MatmulUnpreparedWeightIsAClearError) {
  SKIP_WITHOUT_GPU();
  const TestWeight w = make_weight(GgmlType::BF16, 45, 96, 8);
  Buffer<float> x = dev(randn(2 * 96, 9));
  Buffer<float> y(gpu(), 2 * 45);
  try {
    gpu().matmul(x.data(), 2, w.host, nullptr, y.data());
    FAIL() << "unprepared weight accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("was not uploaded"), std::string::npos) << m;
    EXPECT_NE(m.find("prepare_weights"), std::string::npos) << m;
  }
}

// y = round(x) W^T + b on the GPU against cpu_ops() and reference_ops().
void check_matmul(const TestWeight& w, int64_t n, bool with_bias, bool rounding, uint32_t seed, double bound) {
  const int64_t rows = w.host.rows, cols = w.host.cols;
  const auto x = randn(size_t(n * cols), seed);
  const auto bias = randn(static_cast<size_t>(rows), seed + 1);
  WeightView hv = w.host, dv = w.device();
  hv.ggml_act_rounding = dv.ggml_act_rounding = rounding;
  std::vector<float> cpu_y(size_t(n * rows)), ref_y(size_t(n * rows));
  cpu_ops().matmul(x.data(), n, hv, with_bias ? bias.data() : nullptr, cpu_y.data());
  reference_ops().matmul(x.data(), n, hv, with_bias ? bias.data() : nullptr, ref_y.data());
  Buffer<float> dx = dev(x), db = dev(bias), dy = poisoned(n * rows);
  gpu().matmul(dx.data(), n, dv, with_bias ? db.data() : nullptr, dy.data());
  const auto y = dy.to_host();
  const std::string what = type_name(w.host.type) + " n=" + std::to_string(n) + (with_bias ? " bias" : "") +
                           (rounding ? " ggml rounding" : " f32 activations");
  // ggml's Q4_1/Q5_1 dot adds m * s, s = fp16(d * sum(q)) of the Q8_1 activation block: cpu_ops'
  // fused kernels (few tokens) carry that fp16 rounding (2^-11 relative of the m term; 2e-3 in
  // tests/backend/test_quant_dot.cpp), the op's definition (reference_ops) and this backend do not.
  const bool q8_1 = rounding && (w.host.type == GgmlType::Q4_1 || w.host.type == GgmlType::Q5_1);
  EXPECT_LE(rel_err(y, cpu_y), q8_1 ? 2e-3 : bound) << what << " vs cpu";
  EXPECT_LE(rel_err(y, ref_y), bound) << what << " vs reference";
}

TEST(CudaOps, MatmulEveryTypeAgainstCpu) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 200;
  for (GgmlType t : kAllTypes) {
    const TestWeight w = make_weight(t, 45, 768, seed++);
    for (int64_t n : {1, 5, 33}) check_matmul(w, n, n != 5, true, seed++, is_float_type(t) ? kFwd : kQuant);
  }
}

TEST(CudaOps, MatmulExactActivations) {
  SKIP_WITHOUT_GPU();
  // Without ggml's rounding every type is f32 activations x f32 (dequantized) weights.
  uint32_t seed = 300;
  for (GgmlType t : {GgmlType::BF16, GgmlType::F16, GgmlType::F32, GgmlType::Q4_K, GgmlType::Q8_0}) {
    const TestWeight w = make_weight(t, 45, 512, seed++);
    for (int64_t n : {1, 17}) check_matmul(w, n, true, false, seed++, kFwd);
  }
}

TEST(CudaOps, MatmulLargerShapes) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 400;
  for (GgmlType t : {GgmlType::BF16, GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::F32}) {
    const TestWeight w = make_weight(t, 301, 1024, seed++);
    check_matmul(w, 300, true, true, seed++, is_float_type(t) ? kFwd : kQuant);
  }
}

TEST(CudaOps, MatmulQuantSplitGemmAgainstF32Gemm) {
  SKIP_WITHOUT_GPU();
  // Quantized weights with ggml rounding run the bf16x3 split GEMM; SAMQ_CUDA_QUANT_GEMM=f32 the
  // f32 SGEMM. The two agree far inside kQuant (the split drops ~2^-17 relative per product).
  uint32_t seed = 450;
  for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0}) {
    const TestWeight w = make_weight(t, 301, 1024, seed++);
    const int64_t n = 64;
    const auto x = randn(size_t(n * 1024), seed++);
    Buffer<float> dx = dev(x), y1 = poisoned(n * 301), y2 = poisoned(n * 301);
    gpu().matmul(dx.data(), n, w.device(), nullptr, y1.data());
    {
      EnvGuard env("SAMQ_CUDA_QUANT_GEMM", "f32");
      gpu().matmul(dx.data(), n, w.device(), nullptr, y2.data());
    }
    const auto a = y1.to_host(), b = y2.to_host();
    EXPECT_LE(rel_err(a, b), 2e-5) << type_name(t);
    EXPECT_GT(rel_err(a, b), 0.0) << type_name(t) << ": the two paths should differ (in the last bits)";
  }
}

TEST(CudaOps, MatmulWeightTiles) {
  SKIP_WITHOUT_GPU();
  // 7 weight rows per dequantized f32 tile: 45 rows in 7 tiles (9 tokens: f32 SGEMM); 4 rows per
  // bf16x3 tile (17 tokens: the split GEMM), 12 tiles.
  EnvGuard env("SAMQ_CUDA_SCRATCH_BYTES", std::to_string(7 * 768 * 4));
  uint32_t seed = 500;
  for (GgmlType t : {GgmlType::Q6_K, GgmlType::IQ4_NL, GgmlType::Q5_1}) {
    const TestWeight w = make_weight(t, 45, 768, seed++);
    check_matmul(w, 9, true, true, seed++, kQuant);
    check_matmul(w, 17, true, true, seed++, kQuant);
  }
  const TestWeight w = make_weight(GgmlType::BF16, 45, 768, seed++);
  check_matmul(w, 9, true, false, seed++, kFwd);
}

// ---------------------------------------------------------------- elementwise and row ops

TEST(CudaOps, RmsNorm) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 13, d = 333;
  for (bool with_weight : {true, false})
    for (bool alias : {false, true}) {
      const auto x = randn(size_t(n * d), 10, 2.0f), w = randn(static_cast<size_t>(d), 11);
      const float* wp = with_weight ? w.data() : nullptr;
      std::vector<float> ref_y(size_t(n * d)), ref_r(static_cast<size_t>(n)), cpu_y(size_t(n * d)), cpu_r(static_cast<size_t>(n));
      reference_ops().rms_norm(x.data(), n, d, wp, 1e-5f, ref_y.data(), ref_r.data());
      cpu_ops().rms_norm(x.data(), n, d, wp, 1e-5f, cpu_y.data(), cpu_r.data());
      Buffer<float> dx = dev(x), dw = dev(w), dy = poisoned(n * d), dr = poisoned(n);
      float* out = alias ? dx.data() : dy.data();
      gpu().rms_norm(dx.data(), n, d, with_weight ? dw.data() : nullptr, 1e-5f, out, dr.data());
      const auto y = alias ? dx.to_host() : dy.to_host();
      EXPECT_LE(rel_err(y, ref_y), kFwd) << "weight " << with_weight << " alias " << alias;
      EXPECT_LE(rel_err(y, cpu_y), kFwd);
      EXPECT_LE(rel_err(dr.to_host(), ref_r), kFwd);
      EXPECT_LE(rel_err(dr.to_host(), cpu_r), kFwd);
    }
  // rstd_out optional.
  const auto x = randn(size_t(n * d), 12);
  std::vector<float> ref_y(size_t(n * d));
  reference_ops().rms_norm(x.data(), n, d, nullptr, 1e-6f, ref_y.data(), nullptr);
  Buffer<float> dx = dev(x), dy = poisoned(n * d);
  gpu().rms_norm(dx.data(), n, d, nullptr, 1e-6f, dy.data(), nullptr);
  EXPECT_LE(rel_err(dy.to_host(), ref_y), kFwd);
}

struct RopeCase {
  RopeParams p;
  int64_t head_dim;
  std::vector<float> factors;
};

std::vector<RopeCase> rope_cases() {
  std::vector<RopeCase> cs;
  RopeCase a;
  a.p.n_rot = 64;
  a.head_dim = 64;
  cs.push_back(a);
  RopeCase b;  // neox, partial rotation, linear scaling, llama3-style factors, bf16 frequencies
  b.p.n_rot = 48;
  b.head_dim = 80;
  b.p.theta = 1e6f;
  b.p.neox = true;
  b.p.freq_scale = 0.25f;
  b.p.inv_freq_type = GgmlType::BF16;
  for (int i = 0; i < 24; ++i) b.factors.push_back(1.0f + 7.0f * float(i) / 23.0f);
  cs.push_back(b);
  RopeCase c;  // llama pairs with f16 frequencies
  c.p.n_rot = 32;
  c.head_dim = 40;
  c.p.theta = 500000.0f;
  c.p.inv_freq_type = GgmlType::F16;
  cs.push_back(c);
  return cs;
}

const std::vector<int32_t> kRopePos = {0, 1, 2, 7, 100, 4095, 8191, -1, -50, -8191, 33};

TEST(CudaOps, RopeAgainstReference) {
  SKIP_WITHOUT_GPU();
  const int64_t n = int64_t(kRopePos.size()), n_head = 3;
  Buffer<int32_t> dpos = dev(kRopePos);
  uint32_t seed = 600;
  for (RopeCase c : rope_cases()) {
    c.p.freq_factors = c.factors.empty() ? nullptr : c.factors.data();
    const auto x = randn(size_t(n * n_head * c.head_dim), seed++);
    auto ref = x, cpu = x;
    reference_ops().rope(ref.data(), n, n_head, c.head_dim, kRopePos.data(), c.p);
    cpu_ops().rope(cpu.data(), n, n_head, c.head_dim, kRopePos.data(), c.p);
    Buffer<float> dx = dev(x);
    gpu().rope(dx.data(), n, n_head, c.head_dim, dpos.data(), c.p);
    const auto got = dx.to_host();
    EXPECT_LE(rel_err(got, ref), kFwd) << "n_rot " << c.p.n_rot << " neox " << c.p.neox;
    EXPECT_LE(rel_err(got, cpu), kFwd) << "n_rot " << c.p.n_rot << " neox " << c.p.neox;
    // Dims past n_rot are untouched.
    for (int64_t r = 0; r < n * n_head; ++r)
      for (int64_t i = c.p.n_rot; i < c.head_dim; ++i)
        ASSERT_EQ(got[size_t(r * c.head_dim + i)], x[size_t(r * c.head_dim + i)]);
  }
}

TEST(CudaOps, SwigluSoftmaxAdd) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 1001;
  const auto g = randn(static_cast<size_t>(n), 20, 3.0f), u = randn(static_cast<size_t>(n), 21);
  std::vector<float> ref(static_cast<size_t>(n)), cpu(static_cast<size_t>(n));
  reference_ops().swiglu(g.data(), u.data(), n, ref.data());
  cpu_ops().swiglu(g.data(), u.data(), n, cpu.data());
  Buffer<float> dg = dev(g), du = dev(u), dy = poisoned(n);
  gpu().swiglu(dg.data(), du.data(), n, dy.data());
  EXPECT_LE(rel_err(dy.to_host(), ref), kFwd);
  EXPECT_LE(rel_err(dy.to_host(), cpu), kFwd);
  gpu().swiglu(dg.data(), du.data(), n, dg.data());  // aliasing gate
  EXPECT_LE(rel_err(dg.to_host(), ref), kFwd);

  gpu().add(du.data(), dy.data(), n, du.data());
  std::vector<float> sum(static_cast<size_t>(n));
  reference_ops().add(u.data(), ref.data(), n, sum.data());
  EXPECT_LE(rel_err(du.to_host(), sum), kFwd);

  for (int64_t d : {int64_t(151), int64_t(50001)}) {
    const int64_t rows = 7;
    const auto x = randn(size_t(rows * d), 22, 4.0f);
    auto r = x, c = x;
    reference_ops().softmax(r.data(), rows, d);
    cpu_ops().softmax(c.data(), rows, d);
    Buffer<float> dx = dev(x);
    gpu().softmax(dx.data(), rows, d);
    EXPECT_LE(rel_err(dx.to_host(), r), kFwd) << "d=" << d;
    // cpu_ops sums the exponentials in float: only the short row is within kFwd of it.
    if (d < 1000) {
      EXPECT_LE(rel_err(dx.to_host(), c), kFwd) << "d=" << d;
    }
  }
}

// ---------------------------------------------------------------- attention

struct AttnCase {
  int64_t n_tokens, n_kv, n_head, n_head_kv, head_dim;
  std::vector<int32_t> pos;  // empty: n_kv - n_tokens + t
};

std::vector<int32_t> positions(const AttnCase& c) {
  if (!c.pos.empty()) return c.pos;
  std::vector<int32_t> p(size_t(c.n_tokens));
  for (int64_t t = 0; t < c.n_tokens; ++t) p[static_cast<size_t>(t)] = int32_t(c.n_kv - c.n_tokens + t);
  return p;
}

std::string describe(const AttnCase& c) {
  return "n_tokens " + std::to_string(c.n_tokens) + " n_kv " + std::to_string(c.n_kv) + " heads " +
         std::to_string(c.n_head) + "/" + std::to_string(c.n_head_kv) + " hd " + std::to_string(c.head_dim);
}

const std::vector<AttnCase> kAttnCases = {
    {7, 7, 4, 2, 64, {}},                   // prefill, GQA group 2
    {5, 19, 8, 2, 40, {}},                  // n_kv > n_tokens (positions 14..18), group 4
    {1, 33, 4, 1, 64, {}},                  // decode, group 4
    {5, 8, 6, 3, 24, {3, 0, 5, 7, 1}},      // unordered positions, some before the cache end
    {37, 45, 4, 4, 32, {}},                 // no GQA, odd sizes
};

void check_attention(const AttnCase& c, uint32_t seed) {
  const auto pos = positions(c);
  const int64_t qw = c.n_head * c.head_dim, kw = c.n_head_kv * c.head_dim;
  const auto q = randn(size_t(c.n_tokens * qw), seed), k = randn(size_t(c.n_kv * kw), seed + 1),
             v = randn(size_t(c.n_kv * kw), seed + 2);
  AttentionArgs a;
  a.n_tokens = c.n_tokens;
  a.n_kv = c.n_kv;
  a.n_head = c.n_head;
  a.n_head_kv = c.n_head_kv;
  a.head_dim = c.head_dim;
  a.scale = 1.0f / std::sqrt(float(c.head_dim));
  std::vector<float> ref_o(size_t(c.n_tokens * qw)), ref_p(size_t(c.n_head * c.n_tokens * c.n_kv));
  std::vector<float> cpu_o(ref_o.size()), cpu_p(ref_p.size());
  AttentionArgs h = a;
  h.q = q.data();
  h.k = k.data();
  h.v = v.data();
  h.pos = pos.data();
  h.out = ref_o.data();
  h.probs = ref_p.data();
  reference_ops().attention(h);
  h.out = cpu_o.data();
  h.probs = cpu_p.data();
  cpu_ops().attention(h);

  Buffer<float> dq = dev(q), dk = dev(k), dv = dev(v), dout = poisoned(int64_t(ref_o.size())),
                dprobs = poisoned(int64_t(ref_p.size()));
  Buffer<int32_t> dpos = dev(pos);
  AttentionArgs g = a;
  g.q = dq.data();
  g.k = dk.data();
  g.v = dv.data();
  g.pos = dpos.data();
  g.out = dout.data();
  g.probs = dprobs.data();
  gpu().attention(g);
  const auto o = dout.to_host(), p = dprobs.to_host();
  EXPECT_LE(rel_err(o, ref_o), kFwd) << describe(c);
  EXPECT_LE(rel_err(o, cpu_o), kFwd) << describe(c);
  EXPECT_LE(rel_err(p, ref_p), kFwd) << describe(c);
  // Exact zeros past each query's position.
  for (int64_t hh = 0; hh < c.n_head; ++hh)
    for (int64_t t = 0; t < c.n_tokens; ++t)
      for (int64_t j = pos[static_cast<size_t>(t)] + 1; j < c.n_kv; ++j)
        ASSERT_EQ(p[size_t((hh * c.n_tokens + t) * c.n_kv + j)], 0.0f) << describe(c);

  // Without probs: the same output.
  Buffer<float> dout2 = poisoned(int64_t(ref_o.size()));
  g.out = dout2.data();
  g.probs = nullptr;
  gpu().attention(g);
  EXPECT_LE(rel_err(dout2.to_host(), ref_o), kFwd) << describe(c) << " (no probs)";
}

TEST(CudaOps, AttentionAgainstReference) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 700;
  for (const AttnCase& c : kAttnCases) check_attention(c, seed += 3);
}

TEST(CudaOps, AttentionLongWithProbs) {
  SKIP_WITHOUT_GPU();
  check_attention({1100, 1100, 4, 2, 64, {}}, 800);
}

TEST(CudaOps, AttentionChunked) {
  SKIP_WITHOUT_GPU();
  // 64 KiB of scores per chunk: 13 tokens of one kv head per chunk (group 4, 310 keys).
  EnvGuard env("SAMQ_CUDA_ATTN_BYTES", std::to_string(64 << 10));
  check_attention({300, 310, 8, 2, 40, {}}, 900);
  // A budget below one row: one token per chunk.
  EnvGuard env2("SAMQ_CUDA_ATTN_BYTES", "16");
  check_attention({9, 12, 4, 2, 16, {}}, 910);
}

// ---------------------------------------------------------------- backward

void check_matmul_backward(const TestWeight& w, int64_t n, bool want_dx, bool want_dw, bool want_db, uint32_t seed) {
  const int64_t rows = w.host.rows, cols = w.host.cols;
  const auto x = randn(size_t(n * cols), seed), dy = randn(size_t(n * rows), seed + 1);
  const auto dx0 = randn(size_t(n * cols), seed + 2, 0.1f), dw0 = randn(size_t(rows * cols), seed + 3, 0.1f),
             db0 = randn(static_cast<size_t>(rows), seed + 4, 0.1f);
  auto cdx = dx0, cdw = dw0, cdb = db0;
  cpu_backward_ops().matmul_backward(x.data(), dy.data(), n, w.host, want_dx ? cdx.data() : nullptr,
                                     want_dw ? cdw.data() : nullptr, want_db ? cdb.data() : nullptr);
  Buffer<float> gx = dev(x), gdy = dev(dy), gdx = dev(dx0), gdw = dev(dw0), gdb = dev(db0);
  gpu_grad().matmul_backward(gx.data(), gdy.data(), n, w.device(), want_dx ? gdx.data() : nullptr,
                             want_dw ? gdw.data() : nullptr, want_db ? gdb.data() : nullptr);
  const std::string what = type_name(w.host.type) + " n=" + std::to_string(n);
  EXPECT_LE(rel_err(gdx.to_host(), cdx), kBwd) << what << " dx";
  EXPECT_LE(rel_err(gdw.to_host(), cdw), kBwd) << what << " dw";
  EXPECT_LE(rel_err(gdb.to_host(), cdb), kOrdered) << what << " db";
}

TEST(CudaBackward, MatmulBackwardAgainstCpu) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 1000;
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K,
                     GgmlType::IQ4_XS}) {
    const TestWeight w = make_weight(t, 45, 768, seed += 10);
    check_matmul_backward(w, 37, true, true, true, seed + 5);
    check_matmul_backward(w, 1, true, false, false, seed + 6);
    check_matmul_backward(w, 19, false, true, true, seed + 7);
  }
}

TEST(CudaBackward, MatmulBackwardTiledAndTokenBlocks) {
  SKIP_WITHOUT_GPU();
  // Weight tiles of 4 rows; bf16 halves of 3 tokens at a time.
  EnvGuard env("SAMQ_CUDA_SCRATCH_BYTES", std::to_string(4 * 256 * 4));
  uint32_t seed = 1100;
  for (GgmlType t : {GgmlType::BF16, GgmlType::Q4_K}) {
    const TestWeight w = make_weight(t, 45, 256, seed += 10);
    check_matmul_backward(w, 37, true, true, true, seed + 5);
  }
}

TEST(CudaBackward, MatmulBackwardIsDeterministic) {
  SKIP_WITHOUT_GPU();
  const TestWeight w = make_weight(GgmlType::BF16, 301, 1024, 1200);
  const int64_t n = 257;
  Buffer<float> x = dev(randn(size_t(n * 1024), 1201)), dy = dev(randn(size_t(n * 301), 1202));
  std::vector<float> first_dx, first_dw;
  for (int rep = 0; rep < 2; ++rep) {
    Buffer<float> dx(gpu(), n * 1024), dw(gpu(), 301 * 1024);
    dx.zero();
    dw.zero();
    gpu_grad().matmul_backward(x.data(), dy.data(), n, w.device(), dx.data(), dw.data(), nullptr);
    if (rep == 0) {
      first_dx = dx.to_host();
      first_dw = dw.to_host();
    } else {
      EXPECT_TRUE(dx.to_host() == first_dx);
      EXPECT_TRUE(dw.to_host() == first_dw);
    }
  }
}

TEST(CudaBackward, RmsNormBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 13, d = 333;
  for (bool with_weight : {true, false}) {
    const auto x = randn(size_t(n * d), 30, 2.0f), w = randn(static_cast<size_t>(d), 31), dy = randn(size_t(n * d), 32);
    const auto dx0 = randn(size_t(n * d), 33, 0.1f), dw0 = randn(static_cast<size_t>(d), 34, 0.1f);
    auto cdx = dx0, cdw = dw0;
    cpu_backward_ops().rms_norm_backward(x.data(), dy.data(), n, d, with_weight ? w.data() : nullptr, 1e-5f,
                                         cdx.data(), cdw.data());
    Buffer<float> gx = dev(x), gw = dev(w), gdy = dev(dy), gdx = dev(dx0), gdw = dev(dw0);
    gpu_grad().rms_norm_backward(gx.data(), gdy.data(), n, d, with_weight ? gw.data() : nullptr, 1e-5f, gdx.data(),
                                 gdw.data());
    EXPECT_LE(rel_err(gdx.to_host(), cdx), kBwd) << "weight " << with_weight;
    EXPECT_LE(rel_err(gdw.to_host(), cdw), kBwd) << "weight " << with_weight;
  }
}

TEST(CudaBackward, RopeBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t n = int64_t(kRopePos.size()), n_head = 5;
  Buffer<int32_t> dpos = dev(kRopePos);
  uint32_t seed = 1300;
  for (RopeCase c : rope_cases()) {
    c.p.freq_factors = c.factors.empty() ? nullptr : c.factors.data();
    const auto g = randn(size_t(n * n_head * c.head_dim), seed++);
    auto cpu = g;
    cpu_backward_ops().rope_backward(cpu.data(), n, n_head, c.head_dim, kRopePos.data(), c.p);
    Buffer<float> dg = dev(g);
    gpu_grad().rope_backward(dg.data(), n, n_head, c.head_dim, dpos.data(), c.p);
    EXPECT_LE(rel_err(dg.to_host(), cpu), kFwd) << "n_rot " << c.p.n_rot;
  }
}

void check_attention_backward(const AttnCase& c, uint32_t seed, bool want_dq, bool want_dk, bool want_dv) {
  const auto pos = positions(c);
  const int64_t qw = c.n_head * c.head_dim, kw = c.n_head_kv * c.head_dim;
  const auto q = randn(size_t(c.n_tokens * qw), seed), k = randn(size_t(c.n_kv * kw), seed + 1),
             v = randn(size_t(c.n_kv * kw), seed + 2), dout = randn(size_t(c.n_tokens * qw), seed + 3);
  const auto dq0 = randn(size_t(c.n_tokens * qw), seed + 4, 0.1f), dk0 = randn(size_t(c.n_kv * kw), seed + 5, 0.1f),
             dv0 = randn(size_t(c.n_kv * kw), seed + 6, 0.1f);
  AttentionArgs a;
  a.n_tokens = c.n_tokens;
  a.n_kv = c.n_kv;
  a.n_head = c.n_head;
  a.n_head_kv = c.n_head_kv;
  a.head_dim = c.head_dim;
  a.scale = 1.0f / std::sqrt(float(c.head_dim));
  AttentionArgs h = a;
  h.q = q.data();
  h.k = k.data();
  h.v = v.data();
  h.pos = pos.data();
  auto cdq = dq0, cdk = dk0, cdv = dv0;
  cpu_backward_ops().attention_backward(h, dout.data(), want_dq ? cdq.data() : nullptr, want_dk ? cdk.data() : nullptr,
                                        want_dv ? cdv.data() : nullptr);
  Buffer<float> gq = dev(q), gk = dev(k), gv = dev(v), gdout = dev(dout), gdq = dev(dq0), gdk = dev(dk0),
                gdv = dev(dv0);
  Buffer<int32_t> gpos = dev(pos);
  AttentionArgs g = a;
  g.q = gq.data();
  g.k = gk.data();
  g.v = gv.data();
  g.pos = gpos.data();
  gpu_grad().attention_backward(g, gdout.data(), want_dq ? gdq.data() : nullptr, want_dk ? gdk.data() : nullptr,
                                want_dv ? gdv.data() : nullptr);
  EXPECT_LE(rel_err(gdq.to_host(), cdq), kBwd) << describe(c) << " dq";
  EXPECT_LE(rel_err(gdk.to_host(), cdk), kBwd) << describe(c) << " dk";
  EXPECT_LE(rel_err(gdv.to_host(), cdv), kBwd) << describe(c) << " dv";
}

TEST(CudaBackward, AttentionBackwardAgainstCpu) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 1400;
  for (const AttnCase& c : kAttnCases) check_attention_backward(c, seed += 10, true, true, true);
  check_attention_backward({33, 40, 8, 2, 64, {}}, 1500, true, false, true);
  check_attention_backward({33, 40, 8, 2, 64, {}}, 1510, false, true, false);
  check_attention_backward({200, 200, 4, 2, 64, {}}, 1520, true, true, true);
}

TEST(CudaBackward, AttentionBackwardChunked) {
  SKIP_WITHOUT_GPU();
  EnvGuard env("SAMQ_CUDA_ATTN_BYTES", std::to_string(64 << 10));
  check_attention_backward({300, 310, 8, 2, 40, {}}, 1600, true, true, true);
}

TEST(CudaBackward, AttentionBackwardIsDeterministic) {
  SKIP_WITHOUT_GPU();
  const AttnCase c{300, 300, 8, 2, 64, {}};
  const auto pos = positions(c);
  const int64_t qw = c.n_head * c.head_dim, kw = c.n_head_kv * c.head_dim;
  Buffer<float> q = dev(randn(size_t(c.n_tokens * qw), 1700)), k = dev(randn(size_t(c.n_kv * kw), 1701)),
                v = dev(randn(size_t(c.n_kv * kw), 1702)), dout = dev(randn(size_t(c.n_tokens * qw), 1703));
  Buffer<int32_t> gpos = dev(pos);
  AttentionArgs a;
  a.n_tokens = c.n_tokens;
  a.n_kv = c.n_kv;
  a.n_head = c.n_head;
  a.n_head_kv = c.n_head_kv;
  a.head_dim = c.head_dim;
  a.scale = 0.125f;
  a.q = q.data();
  a.k = k.data();
  a.v = v.data();
  a.pos = gpos.data();
  std::vector<float> first[3];
  for (int rep = 0; rep < 2; ++rep) {
    Buffer<float> dq(gpu(), c.n_tokens * qw), dk(gpu(), c.n_kv * kw), dv(gpu(), c.n_kv * kw);
    dq.zero();
    dk.zero();
    dv.zero();
    gpu_grad().attention_backward(a, dout.data(), dq.data(), dk.data(), dv.data());
    const std::vector<float> got[3] = {dq.to_host(), dk.to_host(), dv.to_host()};
    for (int i = 0; i < 3; ++i) {
      if (rep == 0) first[i] = got[i];
      else EXPECT_TRUE(got[i] == first[i]) << "output " << i;
    }
  }
}

TEST(CudaBackward, SwigluBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 1001;
  const auto g = randn(static_cast<size_t>(n), 40, 3.0f), u = randn(static_cast<size_t>(n), 41), dy = randn(static_cast<size_t>(n), 42);
  const auto dg0 = randn(static_cast<size_t>(n), 43, 0.1f), du0 = randn(static_cast<size_t>(n), 44, 0.1f);
  auto cdg = dg0, cdu = du0;
  cpu_backward_ops().swiglu_backward(g.data(), u.data(), dy.data(), n, cdg.data(), cdu.data());
  Buffer<float> gg = dev(g), gu = dev(u), gdy = dev(dy), gdg = dev(dg0), gdu = dev(du0);
  gpu_grad().swiglu_backward(gg.data(), gu.data(), gdy.data(), n, gdg.data(), gdu.data());
  EXPECT_LE(rel_err(gdg.to_host(), cdg), kBwd);
  EXPECT_LE(rel_err(gdu.to_host(), cdu), kBwd);
}

TEST(CudaBackward, SoftmaxCrossEntropy) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 9, v = 1001;
  const std::vector<int32_t> labels = {3, -1, 1000, 0, 17, -1, 500, 999, 2};
  const auto logits = randn(size_t(n * v), 50, 3.0f);
  Buffer<float> gl = dev(logits);
  Buffer<int32_t> glab = dev(labels);
  for (bool with_probs : {true, false}) {
    std::vector<float> cd(size_t(n * v)), cp(size_t(n * v));
    const double closs = cpu_backward_ops().softmax_cross_entropy_backward(logits.data(), labels.data(), n, v, 0.25f,
                                                                           cd.data(), with_probs ? cp.data() : nullptr);
    Buffer<float> gd = poisoned(n * v), gp = poisoned(n * v);
    const double gloss = gpu_grad().softmax_cross_entropy_backward(gl.data(), glab.data(), n, v, 0.25f, gd.data(),
                                                                   with_probs ? gp.data() : nullptr);
    EXPECT_NEAR(gloss, closs, 1e-9 * std::fabs(closs)) << "probs " << with_probs;
    const auto d = gd.to_host();
    EXPECT_LE(rel_err(d, cd), kFwd) << "probs " << with_probs;
    for (int64_t t : {1, 5})
      for (int64_t i = 0; i < v; ++i) ASSERT_EQ(d[size_t(t * v + i)], 0.0f) << "unlabelled row " << t;
    if (with_probs) {
      EXPECT_LE(rel_err(gp.to_host(), cp), kFwd);
    }
  }
  Buffer<int32_t> bad = dev(std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, int32_t(v)});
  Buffer<float> gd(gpu(), n * v);
  EXPECT_THROW(gpu_grad().softmax_cross_entropy_backward(gl.data(), bad.data(), n, v, 1.0f, gd.data(), nullptr), Error);
}

TEST(CudaBackward, SampleLabelsEqualGumbelLabel) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 70, v = 32001;
  auto l = randn(size_t(n * v), 60, 3.0f);
  for (int64_t i = 0; i < v; ++i) l[size_t(4 * v + i)] = 0.5f;  // row 4: all equal (ties broken by the noise)
  l[size_t(6 * v + 17)] = 80.0f;                                  // row 6: one dominant logit
  std::vector<int64_t> keys(static_cast<size_t>(n));
  std::mt19937_64 gen(61);
  for (auto& k : keys) k = int64_t(gen() >> 1);
  keys[2] = -1;
  keys[9] = 0;
  Buffer<float> gl_in = dev(l);
  Buffer<int64_t> gk = dev(keys);
  Buffer<int32_t> gl = dev(std::vector<int32_t>(static_cast<size_t>(n), -7));
  gpu_grad().sample_labels(gl_in.data(), n, v, gk.data(), gl.data());
  const auto got = gl.to_host();
  for (int64_t t = 0; t < n; ++t) {
    const int64_t k = keys[size_t(t)];
    const int32_t want = k < 0 ? -1 : gumbel_label(&l[size_t(t * v)], v, uint64_t(k));
    EXPECT_EQ(got[static_cast<size_t>(t)], want) << "row " << t;
  }
  EXPECT_EQ(got[6], 17);
}

TEST(CudaBackward, EmbeddingAndBiasBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 50, d = 333, vocab = 23;
  std::vector<int32_t> ids(static_cast<size_t>(n));
  std::mt19937 gen(70);
  for (auto& id : ids) id = int32_t(gen() % vocab);
  ids[3] = ids[4] = ids[40] = 7;  // repeats
  const auto dy = randn(size_t(n * d), 71);
  const auto e0 = randn(size_t(vocab * d), 72, 0.1f), b0 = randn(static_cast<size_t>(d), 73, 0.1f);
  auto ce = e0, cb = b0;
  cpu_backward_ops().embedding_backward(ids.data(), dy.data(), n, d, ce.data());
  cpu_backward_ops().bias_backward(dy.data(), n, d, cb.data());
  Buffer<int32_t> gids = dev(ids);
  Buffer<float> gdy = dev(dy), ge = dev(e0), gb = dev(b0);
  gpu_grad().embedding_backward(gids.data(), gdy.data(), n, d, ge.data());
  gpu_grad().bias_backward(gdy.data(), n, d, gb.data());
  EXPECT_LE(rel_err(ge.to_host(), ce), kOrdered);
  EXPECT_LE(rel_err(gb.to_host(), cb), kOrdered);
}

TEST(CudaBackward, Statistics) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 37, w = 333;
  const auto v = randn(size_t(n * w), 80, 3.0f);
  Buffer<float> gv = dev(v);
  // col_sq_accumulate
  std::vector<double> acc0(static_cast<size_t>(w));
  for (int64_t j = 0; j < w; ++j) acc0[static_cast<size_t>(j)] = 0.5 * double(j);
  auto cacc = acc0;
  cpu_backward_ops().col_sq_accumulate(v.data(), n, w, cacc.data());
  Buffer<double> gacc = dev(acc0);
  gpu_grad().col_sq_accumulate(gv.data(), n, w, gacc.data());
  EXPECT_LE(rel_err(gacc.to_host(), cacc), 1e-12);
  // sq_accumulate
  const auto s0 = randn(size_t(n * w), 81, 0.1f);
  auto cs = s0;
  cpu_backward_ops().sq_accumulate(v.data(), n * w, cs.data());
  Buffer<float> gs = dev(s0);
  gpu_grad().sq_accumulate(gv.data(), n * w, gs.data());
  EXPECT_LE(rel_err(gs.to_host(), cs), kOrdered);
  // sum_sq against a double brute force, small and large.
  for (int64_t m : {int64_t(5), int64_t(1000003)}) {
    const auto g = randn(static_cast<size_t>(m), 82, 2.0f);
    double want = 0;
    for (float x : g) want += double(x) * double(x);
    Buffer<float> gg = dev(g);
    const double got = gpu_grad().sum_sq(gg.data(), m);
    EXPECT_NEAR(got, want, 1e-12 * want) << "n=" << m;
    EXPECT_EQ(got, gpu_grad().sum_sq(gg.data(), m)) << "deterministic";
    // fused: the same sum bit for bit, and acc as sq_accumulate (bit for bit), in one pass;
    // offset by one float so that the vectorized sq_accumulate takes its unaligned path
    const auto a0 = randn(static_cast<size_t>(m + 1), 83, 0.1f);
    Buffer<float> ga = dev(a0), gb = dev(a0);
    Buffer<double> sum(gpu(), 1);
    gpu_grad().sq_accumulate_sum(gg.data(), m, ga.data() + 1, sum.data());
    gpu_grad().sq_accumulate(gg.data(), m, gb.data() + 1);
    EXPECT_EQ(sum.to_host()[0], got) << "n=" << m;
    EXPECT_TRUE(ga.to_host() == gb.to_host()) << "n=" << m;
    auto ca = a0;
    cpu_backward_ops().sq_accumulate(g.data(), m, ca.data() + 1);
    EXPECT_LE(rel_err(ga.to_host(), ca), kOrdered) << "n=" << m;
  }
  // col_sq over many token segments (512 tokens x 4096 columns: 64 segments of 8 tokens)
  {
    const int64_t n2 = 512, w2 = 4096;
    const auto v2 = randn(size_t(n2 * w2), 84, 1.0f);
    std::vector<double> c2(static_cast<size_t>(w2), 1.0);
    cpu_backward_ops().col_sq_accumulate(v2.data(), n2, w2, c2.data());
    Buffer<float> gv2 = dev(v2);
    Buffer<double> g2 = dev(std::vector<double>(static_cast<size_t>(w2), 1.0));
    gpu_grad().col_sq_accumulate(gv2.data(), n2, w2, g2.data());
    EXPECT_LE(rel_err(g2.to_host(), c2), 1e-12);
  }
}

void check_xtx(int64_t n, int64_t cols, uint32_t seed) {
  const auto x = randn(size_t(n * cols), seed);
  std::vector<double> H0(size_t(cols * cols));
  std::mt19937 gen(seed + 1);
  std::normal_distribution<double> nd(0.0, 1.0);
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) H0[size_t(i * cols + j)] = j >= i ? nd(gen) : 12345.0;  // lower: sentinel
  Buffer<float> gx = dev(x);
  Buffer<double> gH = dev(H0);
  gpu_grad().xtx_accumulate(gx.data(), n, cols, gH.data());
  const auto H = gH.to_host();
  double num = 0, den = 0;
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const double got = H[size_t(i * cols + j)];
      if (j < i) {
        ASSERT_EQ(got, 12345.0) << "lower triangle written at " << i << "," << j;
        continue;
      }
      double s = H0[size_t(i * cols + j)];
      for (int64_t t = 0; t < n; ++t) s += double(x[size_t(t * cols + i)]) * double(x[size_t(t * cols + j)]);
      num = std::max(num, std::fabs(got - s));
      den = std::max(den, std::fabs(s));
    }
  EXPECT_LE(num / den, 1e-12) << "n=" << n << " cols=" << cols;
}

TEST(CudaBackward, XtxAccumulateAgainstBruteForce) {
  SKIP_WITHOUT_GPU();
  check_xtx(70, 45, 90);
  check_xtx(1, 33, 91);
  check_xtx(9, 2300, 94);  // above 2048 columns: Dsyrk diagonal blocks + Dgemm below them
  {
    EnvGuard env("SAMQ_CUDA_SCRATCH_BYTES", std::to_string(9 * 45 * 8));  // 9 rows of x per dsyrk
    check_xtx(70, 45, 92);
  }
  // Against the CPU table too.
  const int64_t n = 50, cols = 77;
  const auto x = randn(size_t(n * cols), 93);
  std::vector<double> cH(size_t(cols * cols), 0.0);
  cpu_backward_ops().xtx_accumulate(x.data(), n, cols, cH.data());
  Buffer<float> gx = dev(x);
  Buffer<double> gH = dev(std::vector<double>(size_t(cols * cols), 0.0));
  gpu_grad().xtx_accumulate(gx.data(), n, cols, gH.data());
  EXPECT_LE(rel_err(gH.to_host(), cH), 1e-12);
}

// ---------------------------------------------------------------- eval statistics

// Ops::eval_token_stats on the GPU against the host reference (reference_ops()), with the base as
// full logits and as the codec's sparse rows; v large enough for many strided passes per thread.
void check_eval_stats(int64_t n, int64_t v, uint32_t seed) {
  auto base = randn(size_t(n * v), seed, 3.0f);
  base[size_t(1 * v + 7)] = 40.0f;  // row 1: most ids more than 16 nats below the max
  base[size_t(2 * v + 3)] = 30.0f;  // row 2: tie for the max (ids 3 and v - 2)
  base[size_t(2 * v + v - 2)] = 30.0f;
  for (int64_t i = 0; i < v; ++i) base[size_t(3 * v + i)] = 0.25f;  // row 3: constant (scale 0)
  auto q = base;
  const auto noise = randn(size_t(n * v), seed + 1, 0.3f);
  for (size_t i = 0; i < q.size(); ++i) q[i] += noise[i];
  q[size_t(2 * v + 3)] = q[size_t(2 * v + v - 2)] = 31.0f;  // model tie too: first index wins
  std::vector<int32_t> next(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) next[size_t(r)] = int32_t((r * 7919 + 3) % v);
  next[1] = 7;
  // sparse rows, built as eval/logits_codec.h's encode_dist (ids with code > 0, ascending) by the
  // reference's dense encoding: decode row by row through the host reference's dense path
  std::vector<float> scale, mlp;
  std::vector<int64_t> off{0};
  std::vector<int32_t> ids;
  std::vector<uint16_t> codes;
  for (int64_t r = 0; r < n; ++r) {
    const float* l = &base[size_t(r * v)];
    float mx = l[0], mn = l[0];
    for (int64_t i = 1; i < v; ++i) {
      mx = std::max(mx, l[i]);
      mn = std::min(mn, l[i]);
    }
    mn = std::max(mn, mx - 16.0f);
    double se = 0;
    for (int64_t i = 0; i < v; ++i) se += std::exp(l[i] - mx);
    const float lse = float(std::log(se));
    const float sc = (mx - mn) / 65535.0f;
    scale.push_back(sc);
    mlp.push_back(mn - mx - lse);
    if (sc != 0.0f)
      for (int64_t i = 0; i < v; ++i) {
        if (!(l[i] > mn)) continue;
        const long c = std::lrintf((1.0f / sc) * (l[i] - mn));
        if (c > 0) {
          ids.push_back(int32_t(i));
          codes.push_back(uint16_t(std::min<long>(c, 65535)));
        }
      }
    off.push_back(int64_t(ids.size()));
  }
  EvalBase hd, hs;
  hd.logits = base.data();
  hs.scale = scale.data();
  hs.min_log_prob = mlp.data();
  hs.offsets = off.data();
  hs.ids = ids.data();
  hs.codes = codes.data();
  Buffer<float> gq = dev(q), gb = dev(base), gscale = dev(scale), gmlp = dev(mlp);
  Buffer<int32_t> gnext = dev(next), gids = dev(ids.empty() ? std::vector<int32_t>{0} : ids);
  Buffer<int64_t> goff = dev(off);
  Buffer<uint16_t> gcodes = dev(codes.empty() ? std::vector<uint16_t>{0} : codes);
  EvalBase dd, ds;
  dd.logits = gb.data();
  ds.scale = gscale.data();
  ds.min_log_prob = gmlp.data();
  ds.offsets = goff.data();
  ds.ids = gids.data();
  ds.codes = gcodes.data();
  const EvalBase* hb[3] = {&hd, &hs, nullptr};
  const EvalBase* db[3] = {&dd, &ds, nullptr};
  const char* names[3] = {"dense", "sparse", "no base"};
  for (int k = 0; k < 3; ++k) {
    std::vector<EvalTokenStats> want(static_cast<size_t>(n));
    reference_ops().eval_token_stats(q.data(), n, v, next.data(), hb[k], want.data());
    Buffer<EvalTokenStats> gout(gpu(), n);
    gpu().zero(gout.data(), size_t(n) * sizeof(EvalTokenStats));
    gpu().eval_token_stats(gq.data(), n, v, gnext.data(), db[k], gout.data());
    const auto got = gout.to_host();
    Buffer<EvalTokenStats> gout2(gpu(), n);
    gpu().eval_token_stats(gq.data(), n, v, gnext.data(), db[k], gout2.data());
    const auto again = gout2.to_host();
    const std::string what = std::string(names[k]) + " n=" + std::to_string(n) + " v=" + std::to_string(v);
    for (int64_t r = 0; r < n; ++r) {
      const EvalTokenStats& a = got[size_t(r)];
      const EvalTokenStats& b = want[size_t(r)];
      EXPECT_NEAR(a.nll, b.nll, 1e-5 * (1 + std::fabs(b.nll))) << what << " row " << r;
      EXPECT_EQ(std::memcmp(&a, &again[size_t(r)], sizeof a), 0) << what << " deterministic, row " << r;
      if (!hb[k]) continue;
      EXPECT_NEAR(a.nll_base, b.nll_base, 1e-5 * (1 + std::fabs(b.nll_base))) << what << " row " << r;
      EXPECT_NEAR(a.kld, b.kld, 1e-5 + 1e-4 * std::fabs(b.kld)) << what << " row " << r;
      EXPECT_NEAR(a.dp, b.dp, 1e-5) << what << " row " << r;
      EXPECT_EQ(a.same_top, b.same_top) << what << " row " << r;
    }
    if (hb[k]) {
      EXPECT_EQ(want[2].same_top, 1) << what << ": both argmaxes take the first of the tied ids";
      EXPECT_GT(want[0].kld, 1e-4) << what;
    }
  }
}

TEST(CudaOps, EvalTokenStatsAgainstReference) {
  SKIP_WITHOUT_GPU();
  check_eval_stats(9, 1000, 95);
  check_eval_stats(37, 128256, 96);  // the Llama-3 vocabulary
}

TEST(CudaBackward, TableNamesAndForwardTable) {
  SKIP_WITHOUT_GPU();
  EXPECT_STREQ(gpu_grad().name(), "cuda");
  EXPECT_EQ(&gpu_grad().ops(), &gpu());
  EXPECT_THROW(cuda_ops(cuda_device_count()), Error);
}

}  // namespace
