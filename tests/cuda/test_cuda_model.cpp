// Model-level parity of the CUDA backend with the CPU engine (issue 13's bounds), on the trained
// refcode-32m and on every tiny checkpoint of ../shared/golden/archs:
//   - forward logits vs the CPU engine in exact float32: max |Δ| <= 2e-3; with ggml's rounding:
//     mean KL between the backends below the sum of the roundings' own KLs (each backend rounded vs exact); vs HF transformers' float32 logits
//     (exact-float mode): the CPU golden test's 1e-3;
//   - perplexity on 32 chunks of eval.txt within 0.05 %;
//   - Hessians in exact float32: relative Frobenius error <= 1e-5 per entry (with ggml's rounding:
//     less than the rounding changes them on the CPU); imatrix cosine >= 0.99999;
//   - `samq analyze --device cuda:0` vs `--device cpu` (CLI, same tokens): every tensor's
//     per-candidate Δloss within 2 %, Spearman >= 0.999, the same plan at the Q4_K_M+imatrix
//     size with at most 2 tensors differing, imatrix cosine >= 0.99999;
//   - `samq quantize --hessian --device cuda:0` (GPTQ on the GPU): KLD against the BF16 model
//     within 2 % of the CPU GPTQ file's.
// Each test skips without a GPU (ctest label gpu). SAMQ_TEST_GPU_AS_CPU=1 runs the "GPU" side on
// the CPU backend instead: a self-check of this harness on machines without a GPU (CPU vs CPU must
// pass trivially), never a substitute for the GPU run. SAMQ_TEST_OUT=DIR keeps the CLI artifacts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <numeric>

#include <nlohmann/json.hpp>

#include "analyze/hessian.h"
#include "analyze/imatrix.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/device.h"
#include "common/compare.h"
#include "common/test_env.h"
#include "core/atomic_file.h"
#include "eval/perplexity.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace samq {
namespace {

bool gpu_as_cpu() { return std::getenv("SAMQ_TEST_GPU_AS_CPU") != nullptr; }
bool have_gpu() { return gpu_as_cpu() || cuda_device_count() > 0; }
Backend gpu() { return gpu_as_cpu() ? cpu_backend() : select_backend("cuda:0"); }
std::string gpu_spec() { return gpu_as_cpu() ? "cpu" : "cuda:0"; }

#define REQUIRE_GPU() \
  if (!have_gpu()) GTEST_SKIP() << "no GPU"

// Where the CLI tests write: SAMQ_TEST_OUT when set (kept), else a temporary directory.
std::string work_dir(const std::string& name) {
  const char* keep = std::getenv("SAMQ_TEST_OUT");
  const std::string d = keep ? std::string(keep) + "/" + name : test::temp_dir() + "/" + name;
  std::filesystem::create_directories(d);
  return d;
}

std::string sh(const std::string& s) { return "'" + s + "'"; }

void run_ok(const std::string& cmd) {
  std::string out;
  const int rc = test::run_command(cmd, &out);
  ASSERT_EQ(rc, 0) << cmd << "\n" << out.substr(out.size() > 4000 ? out.size() - 4000 : 0);
}

// The first n tokens of calib.txt, BOS first.
std::vector<int32_t> calib_tokens(const Model& m, int64_t n) {
  const Tokenizer tok = load_tokenizer(m);
  const std::string text = read_file(test::shared_path("data/calib.txt")).substr(0, size_t(n) * 8);
  std::vector<int32_t> t = tokenize_eval_text(tok, text);
  if (int64_t(t.size()) < n) ADD_FAILURE() << "calib.txt gave " << t.size() << " tokens, need " << n;
  t.resize(size_t(std::min<int64_t>(n, int64_t(t.size()))));
  return t;
}

double rel_frobenius(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

using test::spearman;

// Mean over positions of KL(softmax(p) || softmax(q)), logits (positions x vocab).
double mean_kl(const std::vector<float>& p, const std::vector<float>& q, int64_t vocab) {
  const int64_t n = int64_t(p.size()) / vocab;
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* a = p.data() + i * vocab;
    const float* b = q.data() + i * vocab;
    double ma = a[0], mb = b[0];
    for (int64_t v = 1; v < vocab; ++v) ma = std::max<double>(ma, a[v]), mb = std::max<double>(mb, b[v]);
    double za = 0, zb = 0;
    for (int64_t v = 0; v < vocab; ++v) za += std::exp(a[v] - ma), zb += std::exp(b[v] - mb);
    const double la = ma + std::log(za), lb = mb + std::log(zb);
    double kl = 0;
    for (int64_t v = 0; v < vocab; ++v) kl += std::exp(a[v] - la) * ((a[v] - la) - (b[v] - lb));
    sum += std::max(0.0, kl);
  }
  return n ? sum / double(n) : 0;
}

class CudaModel : public ::testing::TestWithParam<std::string> {
 protected:
  std::string dir() const {
    return GetParam() == "refcode-32m" ? test::shared_path("models/refcode-32m")
                                        : test::shared_path("golden/archs/" + GetParam());
  }
};

TEST_P(CudaModel, LogitsMatchCpuEngine) {
  REQUIRE_GPU();
  const Backend g = gpu();
  auto cpu = Model::load(dir());
  auto dev = Model::load(dir(), *g.ops);
  const int64_t n = GetParam() == "refcode-32m" ? 512 : 128;
  const auto tokens = calib_tokens(*cpu, n);
  // Exact float32 numerics: the same function up to summation order, so within 2e-3.
  cpu->ggml_numerics = dev->ggml_numerics = false;
  const float d_exact = test::max_abs_diff(forward_logits(*cpu, cpu_ops(), tokens), forward_logits(*dev, *g.ops, tokens));
  EXPECT_LE(d_exact, 2e-3f) << "exact float32 numerics";
  // llama.cpp's numerics (the default): activations rounded to bf16/f16 before each matmul and an
  // f16 KV cache, a discontinuous function of its inputs. Where the backends' sums differ in the
  // last bit a rounding flips by a whole step (2^-8 relative for bf16), and the flip propagates,
  // so max |Δ| is set by the rarest flips (measured: 0.0575 on refcode-32m, about what the
  // rounding itself moves the CPU's logits, 0.054). The contract is on the distributions. Each
  // backend's rounded result is its exact result plus a rounding perturbation (e_cpu, e_gpu); to
  // second order KL(p + e1 || p + e2) = E|e1 - e2|^2 / 2 in the Fisher metric, which is
  // KL(cpu ggml || cpu exact) + KL(gpu ggml || gpu exact) when the two perturbations are
  // uncorrelated and less when they share rounding decisions. So the backends may disagree (mean
  // KL) by at most the sum of what the rounding moves each of them from its own exact arithmetic
  // (both measured here), for a whole prefill and for prefill + decode steps: a GPU error beyond
  // the rounding's own size fails it. (A first version bounded it by the CPU's term alone, which
  // ignores the GPU's own rounding; refcode-32m measured 1.21x that.)
  const int64_t vocab = cpu->hparams.n_vocab;
  const auto cpu_exact = forward_logits(*cpu, cpu_ops(), tokens);
  const auto gpu_exact = forward_logits(*dev, *g.ops, tokens);
  // prefill then one token at a time (KV cache, positions)
  auto decode = [&](const Model& m, const Ops& ops) {
    KvCache c(m, n, ops);
    Batch pre;
    const int64_t half = n - 4;
    pre.add(&c, std::vector<int32_t>(tokens.begin(), tokens.begin() + half), true);
    forward(m, ops, pre);
    std::vector<float> all = pre.seqs[0].logits;
    for (int64_t i = half; i < n; ++i) {
      Batch step;
      step.add(&c, {tokens[size_t(i)]});
      forward(m, ops, step);
      all.insert(all.end(), step.seqs[0].logits.begin(), step.seqs[0].logits.end());
    }
    return all;
  };
  EXPECT_LE(test::max_abs_diff(decode(*dev, *g.ops), decode(*cpu, cpu_ops())), 2e-3f) << "prefill + decode, exact float32";
  const auto cpu_exact_dec = decode(*cpu, cpu_ops()), gpu_exact_dec = decode(*dev, *g.ops);
  cpu->ggml_numerics = dev->ggml_numerics = true;
  const auto a = forward_logits(*cpu, cpu_ops(), tokens);
  const auto b = forward_logits(*dev, *g.ops, tokens);
  const double kl = mean_kl(a, b, vocab);
  const double kl_round = mean_kl(a, cpu_exact, vocab) + mean_kl(b, gpu_exact, vocab);
  const auto ad = decode(*cpu, cpu_ops()), bd = decode(*dev, *g.ops);
  const double kl_dec = mean_kl(ad, bd, vocab);
  const double kl_dec_round = mean_kl(ad, cpu_exact_dec, vocab) + mean_kl(bd, gpu_exact_dec, vocab);
  std::printf("[ %s ] %s: max |logit(cpu) - logit(gpu)| over %lld tokens = %.3g (exact float32), %.3g (ggml numerics); "
              "ggml numerics mean KL(cpu||gpu) %.3g vs the roundings' own KL(cpu ggml||cpu exact) + KL(gpu ggml||gpu "
              "exact) %.3g; prefill + decode %.3g vs %.3g\n",
              GetParam().c_str(), g.device.c_str(), (long long)n, d_exact, test::max_abs_diff(a, b), kl, kl_round,
              kl_dec, kl_dec_round);
  EXPECT_LE(kl, kl_round) << "ggml numerics: the backends disagree more than their roundings move them";
  EXPECT_LE(kl_dec, kl_dec_round) << "ggml numerics, prefill + decode";
}

TEST_P(CudaModel, LogitsMatchTransformersExactFloat) {
  REQUIRE_GPU();
  if (GetParam() == "refcode-32m") GTEST_SKIP() << "no HF logits for refcode-32m here (the archs have them)";
  const auto j = nlohmann::json::parse(read_file(dir() + "/reference-logits.json"));
  const auto tokens = j["tokens"].get<std::vector<int32_t>>();
  const std::string raw = read_file(dir() + "/reference-logits.f32");
  std::vector<float> ref(raw.size() / 4);
  std::memcpy(ref.data(), raw.data(), raw.size());
  const Backend g = gpu();
  auto dev = Model::load(dir(), *g.ops);
  dev->transformers_rope = true;
  dev->ggml_numerics = false;
  const auto b = forward_logits(*dev, *g.ops, tokens);
  const float d = test::max_abs_diff(b, ref);
  std::printf("[ %s ] %s vs HF float32: max |Δ logit| = %.3g\n", GetParam().c_str(), g.device.c_str(), d);
  EXPECT_LE(d, 1e-3f);
}

TEST_P(CudaModel, HessiansAndImatrixMatchCpu) {
  REQUIRE_GPU();
  const Backend g = gpu();
  auto cpu = Model::load(dir());
  auto dev = Model::load(dir(), *g.ops);
  const int64_t ctx = GetParam() == "refcode-32m" ? 512 : 64;
  const auto toks = calib_tokens(*cpu, 2 * ctx);
  const std::vector<std::vector<int32_t>> chunks = {{toks.begin(), toks.begin() + ctx}, {toks.begin() + ctx, toks.end()}};
  // Exact float32 numerics: the same sums up to summation order, so within 1e-5.
  cpu->ggml_numerics = dev->ggml_numerics = false;
  const Hessians hc = collect_hessians(*cpu, cpu_backward_ops(), chunks, false);
  const Hessians hg = collect_hessians(*dev, *g.grad, chunks, false);
  ASSERT_EQ(hc.entries.size(), hg.entries.size());
  double worst = 0;
  for (size_t i = 0; i < hc.entries.size(); ++i) {
    ASSERT_EQ(hc.entries[i].name, hg.entries[i].name);
    EXPECT_EQ(hc.entries[i].count, hg.entries[i].count);
    const double e = rel_frobenius(hg.entries[i].sum, hc.entries[i].sum);
    worst = std::max(worst, e);
    EXPECT_LE(e, 1e-5) << hc.entries[i].name;
  }
  // ggml numerics (the default of samq hessian): activations rounded before the matmuls, so a
  // one-step rounding flip moves a sum; held below what the rounding itself changes on the CPU.
  cpu->ggml_numerics = dev->ggml_numerics = true;
  const Hessians hc_g = collect_hessians(*cpu, cpu_backward_ops(), chunks, false);
  const Hessians hg_g = collect_hessians(*dev, *g.grad, chunks, false);
  double worst_g = 0, rounding = 0;
  for (size_t i = 0; i < hc_g.entries.size(); ++i) {
    const double e = rel_frobenius(hg_g.entries[i].sum, hc_g.entries[i].sum);
    const double r = rel_frobenius(hc_g.entries[i].sum, hc.entries[i].sum);
    worst_g = std::max(worst_g, e);
    rounding = std::max(rounding, r);
    // Inputs no rounding reaches (layer 0's norm input: r = 0) keep the exact-float bound.
    if (r == 0) EXPECT_LE(e, 1e-5) << hc_g.entries[i].name;
  }
  // Over the model: deep layers' inputs carry every earlier flip, so per entry the backends'
  // difference saturates near the rounding's own; the worst entry must stay below it.
  EXPECT_LE(worst_g, rounding) << "Hessians, ggml numerics: the backends differ by more than the rounding does";
  std::printf("[ %s ] Hessians with ggml numerics: worst relative Frobenius error %.3g (the rounding itself: %.3g)\n",
              GetParam().c_str(), worst_g, rounding);
  const Imatrix ic = collect_imatrix(*cpu, cpu_backward_ops(), chunks, false);
  const Imatrix ig = collect_imatrix(*dev, *g.grad, chunks, false);
  ASSERT_EQ(ic.entries.size(), ig.entries.size());
  double worst_cos = 1;
  for (size_t i = 0; i < ic.entries.size(); ++i) {
    const double c = cosine_similarity(ig.entries[i].sum2, ic.entries[i].sum2);
    worst_cos = std::min(worst_cos, c);
    EXPECT_GE(c, 0.99999) << ic.entries[i].name;
  }
  std::printf("[ %s ] Hessians: worst relative Frobenius error %.3g over %zu entries; imatrix worst cosine %.9f\n",
              GetParam().c_str(), worst, hc.entries.size(), worst_cos);
}

INSTANTIATE_TEST_SUITE_P(Models, CudaModel,
                         ::testing::Values("refcode-32m", "llama3-ropescaled", "qwen2-tied-bias", "qwen3-qknorm"));

TEST(CudaRefcode, Perplexity32ChunksWithinFiveHundredthsOfAPercent) {
  REQUIRE_GPU();
  const Backend g = gpu();
  const std::string path = test::shared_path("models/refcode-32m");
  auto cpu = Model::load(path);
  auto dev = Model::load(path, *g.ops);
  const Tokenizer tok = load_tokenizer(*cpu);
  const auto tokens = tokenize_eval_text(tok, read_file(test::shared_path("data/eval.txt")).substr(0, 400000));
  EvalOptions o;
  o.max_chunks = 32;
  o.progress = false;
  const int32_t bos = tok.add_bos_default() ? tok.bos() : -1;
  const EvalResult rc = evaluate(*cpu, cpu_ops(), tokens, bos, o);
  const EvalResult rg = evaluate(*dev, *g.ops, tokens, bos, o);
  ASSERT_EQ(rc.n_chunk, 32);
  const double rel = std::abs(rg.ppl / rc.ppl - 1);
  std::printf("[ refcode-32m ] PPL over 32 chunks: cpu %.5f (%.0f tok/s), %s %.5f (%.0f tok/s), rel diff %.2e\n",
              rc.ppl, rc.tokens_per_second, g.device.c_str(), rg.ppl, rg.tokens_per_second, rel);
  EXPECT_LE(rel, 5e-4);
}

// The CLI path users run: analyze on both devices, plan each at the Q4_K_M+imatrix size, then GPTQ
// quantize on both devices and evaluate against the BF16 model.
TEST(CudaRefcode, AnalyzePlanAndGptqCliMatchCpu) {
  REQUIRE_GPU();
  const std::string d = work_dir("cuda-refcode-cli");
  const std::string bin = test::samq_binary();
  const std::string model = test::shared_path("models/refcode-32m");
  const std::string calib = d + "/calib.txt", evalt = d + "/eval.txt";
  write_file_atomic(calib, read_file(test::shared_path("data/calib.txt")).substr(0, 600000));
  write_file_atomic(evalt, read_file(test::shared_path("data/eval.txt")).substr(0, 400000));
  const std::string dev = gpu_spec();
  for (const std::string side : {"cpu", "gpu"}) {
    const std::string spec = side == "cpu" ? "cpu" : dev;
    run_ok(bin + " analyze " + sh(model) + " --calib " + calib + " --tokens 4096 --device " + spec + " -o " + d + "/" +
           side + ".json --imatrix-out " + d + "/" + side + "-imatrix.gguf");
    run_ok(bin + " plan " + d + "/" + side + ".json --target-size 20542368 -o " + d + "/" + side + "-plan.json");
  }
  const auto jc = nlohmann::json::parse(read_file(d + "/cpu.json"));
  const auto jg = nlohmann::json::parse(read_file(d + "/gpu.json"));
  EXPECT_EQ(jg["device"].get<std::string>().substr(0, 4), gpu_as_cpu() ? "cpu" : "cuda");
  ASSERT_EQ(jc["tensors"].size(), jg["tensors"].size());
  std::vector<double> all_c, all_g;
  double worst = 0;
  std::string worst_at;
  for (size_t i = 0; i < jc["tensors"].size(); ++i) {
    const auto& tc = jc["tensors"][i];
    const auto& tg = jg["tensors"][i];
    ASSERT_EQ(tc["name"], tg["name"]);
    for (auto it = tc["candidates"].begin(); it != tc["candidates"].end(); ++it) {
      ASSERT_TRUE(tg["candidates"].contains(it.key())) << tc["name"] << " " << it.key();
      const double c = it.value()["dloss"].get<double>(), g = tg["candidates"][it.key()]["dloss"].get<double>();
      all_c.push_back(c);
      all_g.push_back(g);
      // Below 1e-12 nats per token a Δloss is float rounding noise (f16 of bf16 weights: ~1e-18).
      if (std::abs(c) < 1e-12 && std::abs(g) < 1e-12) continue;
      const double rel = std::abs(g - c) / std::max(std::abs(c), 1e-30);
      if (rel > worst) {
        worst = rel;
        worst_at = tc["name"].get<std::string>() + " " + it.key();
      }
      EXPECT_LE(rel, 0.02) << tc["name"] << " " << it.key() << ": cpu " << c << ", gpu " << g;
    }
  }
  const double rho = spearman(all_c, all_g);
  EXPECT_GE(rho, 0.999);
  // imatrix
  const Imatrix ic = read_imatrix_gguf(d + "/cpu-imatrix.gguf"), ig = read_imatrix_gguf(d + "/gpu-imatrix.gguf");
  ASSERT_EQ(ic.entries.size(), ig.entries.size());
  double worst_cos = 1;
  for (size_t i = 0; i < ic.entries.size(); ++i) {
    const double c = cosine_similarity(ig.entries[i].sum2, ic.entries[i].sum2);
    worst_cos = std::min(worst_cos, c);
    EXPECT_GE(c, 0.99999) << ic.entries[i].name;
  }
  // plans at the Q4_K_M+imatrix size
  const auto pc = nlohmann::json::parse(read_file(d + "/cpu-plan.json"));
  const auto pg = nlohmann::json::parse(read_file(d + "/gpu-plan.json"));
  std::map<std::string, std::string> types_c;
  for (const auto& t : pc["tensors"]) types_c[t["name"]] = t["type"];
  int differ = 0;
  for (const auto& t : pg["tensors"])
    if (types_c[t["name"]] != t["type"].get<std::string>()) ++differ;
  EXPECT_LE(differ, 2);
  std::printf("[ refcode-32m CLI ] analyze cpu %.0f tok/s, %s %.0f tok/s; Δloss worst rel diff %.3g (%s) over %zu; "
              "Spearman %.6f; imatrix worst cosine %.9f; plans differ in %d tensors\n",
              jc["calibration"]["tokens_per_second"].get<double>(), jg["device"].get<std::string>().c_str(),
              jg["calibration"]["tokens_per_second"].get<double>(), worst, worst_at.c_str(), all_c.size(), rho,
              worst_cos, differ);

  // GPTQ on both devices from the same (CPU) Hessians and plan, then KLD against the BF16 model.
  run_ok(bin + " hessian " + sh(model) + " --calib " + calib + " --tokens 4096 --device " + dev + " -o " + d + "/H.gguf");
  run_ok(bin + " eval " + sh(model) + " --text " + evalt + " --ctx 512 --chunks 16 --device " + dev +
         " --save-logits " + d + "/base.logits");
  std::map<std::string, double> kld;
  for (const std::string side : {"cpu", "gpu"}) {
    const std::string spec = side == "cpu" ? "cpu" : dev;
    const std::string out = d + "/gptq-" + side + ".gguf";
    run_ok(bin + " quantize " + sh(model) + " " + d + "/cpu-plan.json -o " + out + " --imatrix " + d +
           "/cpu-imatrix.gguf --hessian " + d + "/H.gguf --device " + spec);
    run_ok(bin + " eval " + out + " --text " + evalt + " --ctx 512 --chunks 16 --base-logits " + d +
           "/base.logits --device " + dev + " --json " + d + "/eval-" + side + ".json");
    kld[side] = nlohmann::json::parse(read_file(d + "/eval-" + side + ".json"))["kld"]["mean"].get<double>();
  }
  const std::string a = read_file(d + "/gptq-cpu.gguf"), b = read_file(d + "/gptq-gpu.gguf");
  ASSERT_EQ(a.size(), b.size());
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  std::printf("[ refcode-32m GPTQ ] KLD cpu %.6f, gpu %.6f (rel %.3g); files identical in %.4f %% of bytes\n",
              kld["cpu"], kld["gpu"], std::abs(kld["gpu"] / kld["cpu"] - 1), 100.0 * double(same) / double(a.size()));
  EXPECT_LE(std::abs(kld["gpu"] / kld["cpu"] - 1), 0.02);
}

}  // namespace
}  // namespace samq
