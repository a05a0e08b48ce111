// Engine speed against llama.cpp on the same GGUF files and thread count, in one run:
// prompt processing (512 tokens in one batch) and greedy generation (128 tokens), tokens/s,
// best of 3, and the ratio samq / llama.cpp (goals: >= 1.0x generation, >= 0.8x prompt).
// llama.cpp runs through node-llama-cpp (bench/llamacpp_bench.mjs, tests/node/node_modules).
//
// usage: bench_engine [--threads N] [--reps R] [--no-llama] [--only pp|tg] [MODEL.gguf ...]
//   --no-llama   samq only (for profiling: perf record -g bench_engine --no-llama --only tg)
//   --only X     run one phase (pp or tg) only
//   --batch B    also time decode of B independent sequences per step (what `samq serve` runs under
//                load): aggregate tokens/s and the gain over one sequence (samq only)
// Also prints the cost of one empty parallel_for over the thread pool (per-op overhead).
// Default models: the Q4_K_M imatrix anchor, and a Q8_0 file made with
// `samq convert ../shared/models/refcode-32m --type q8_0` (next to this binary's samq).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/simd.h"
#include "backend/ops.h"
#include "core/parallel.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/sampler.h"

using namespace samq;
namespace fs = std::filesystem;
using clk = std::chrono::steady_clock;

namespace {

std::vector<int32_t> prompt_ids(int32_t bos, int n) {  // same ids as llamacpp_bench.mjs
  std::vector<int32_t> ids = {bos < 0 ? 0 : bos};
  long long s = 12345;
  while (int(ids.size()) < n) {
    s = (s * 1103515245 + 12345) % 2147483648LL;
    ids.push_back(int32_t(2 + s % 8000));
  }
  return ids;
}

struct Speed {
  double pp = 0, tg = 0;
};

Speed bench_samq(const std::string& path, int pp, int tg, int reps, const std::string& only) {
  auto m = Model::load(path);
  const auto ids = prompt_ids(m->hparams.bos_id, pp);
  Speed best;
  for (int r = 0; r < reps; ++r) {
    if (only != "tg") {
      KvCache c(*m, pp + 1);
      Batch b;
      b.add(&c, ids);
      const auto t0 = clk::now();
      forward(*m, cpu_ops(), b);
      best.pp = std::max(best.pp, pp / std::chrono::duration<double>(clk::now() - t0).count());
    }
    if (only == "pp") continue;
    KvCache c(*m, tg + 2);
    Batch b;
    b.add(&c, {ids[0]});
    forward(*m, cpu_ops(), b);
    b.seqs[0].tokens = {ids[1]};
    const auto t0 = clk::now();
    for (int i = 0; i < tg; ++i) {
      forward(*m, cpu_ops(), b);
      b.seqs[0].tokens = {argmax(b.seqs[0].logits.data(), m->hparams.n_vocab)};
    }
    best.tg = std::max(best.tg, tg / std::chrono::duration<double>(clk::now() - t0).count());
  }
  return best;
}

// Aggregate tokens/s of greedy decode with `n_seq` sequences stepped together (each with its own
// KV cache, distinct prompts), best of `reps`.
double bench_batched(const std::string& path, int n_seq, int tg, int reps) {
  auto m = Model::load(path);
  const auto ids = prompt_ids(m->hparams.bos_id, 8 * n_seq + 1);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<std::unique_ptr<KvCache>> caches;
    Batch b;
    for (int s = 0; s < n_seq; ++s) {
      caches.push_back(std::make_unique<KvCache>(*m, tg + 10));
      b.add(caches.back().get(), std::vector<int32_t>(ids.begin() + 8 * s, ids.begin() + 8 * s + 8));
    }
    forward(*m, cpu_ops(), b);
    const auto t0 = clk::now();
    for (int i = 0; i < tg; ++i) {
      for (auto& q : b.seqs) q.tokens = {argmax(q.logits.data(), m->hparams.n_vocab)};
      forward(*m, cpu_ops(), b);
    }
    best = std::max(best, double(tg) * n_seq / std::chrono::duration<double>(clk::now() - t0).count());
  }
  return best;
}

bool bench_llamacpp(const std::string& path, int threads, int pp, int tg, int reps, Speed* out) {
  const fs::path script = fs::path(__FILE__).parent_path() / "llamacpp_bench.mjs";
  const std::string cmd = "node '" + script.string() + "' '" + path + "' " + std::to_string(threads) + " " +
                          std::to_string(pp) + " " + std::to_string(tg) + " " + std::to_string(reps) + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return false;
  char buf[4096];
  std::string s;
  while (fgets(buf, sizeof buf, p)) s += buf;
  const int rc = pclose(p);
  if (rc != 0 || std::sscanf(s.c_str(), "{\"pp_tps\":%lf,\"tg_tps\":%lf", &out->pp, &out->tg) != 2) {
    std::fprintf(stderr, "llama.cpp bench failed (%s): %s\n", cmd.c_str(), s.c_str());
    return false;
  }
  return true;
}

// Microseconds per empty parallel_for with one chunk per thread (fork + join of the pool).
double pool_overhead_us(int threads) {
  std::atomic<int64_t> sink{0};
  const auto fn = [&](int64_t b, int64_t e) { sink.fetch_add(e - b, std::memory_order_relaxed); };
  for (int i = 0; i < 1000; ++i) parallel_for(threads, 1, fn);
  const int n = 20000;
  const auto t0 = clk::now();
  for (int i = 0; i < n; ++i) parallel_for(threads, 1, fn);
  return std::chrono::duration<double, std::micro>(clk::now() - t0).count() / n;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 3, batch = 0;
  const int pp = 512, tg = 128;
  bool llama = true;
  std::string only;
  std::vector<std::string> models;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else if (a == "--no-llama") llama = false;
    else if (a == "--batch" && i + 1 < argc) batch = std::atoi(argv[++i]);
    else models.push_back(a);
  }
  set_num_threads(threads);
  if (models.empty()) {
    const std::string shared = SAMQ_SHARED_DIR;
    models.push_back(shared + "/golden/anchors/refcode-32m-Q4_K_M-imatrix.gguf");
    const fs::path samq = fs::absolute(argv[0]).parent_path().parent_path() / "samq";
    const std::string q8 = (fs::temp_directory_path() / "samq-bench-refcode-32m-q8_0.gguf").string();
    if (!fs::exists(q8)) {
      const std::string cmd = "'" + samq.string() + "' -q convert '" + shared + "/models/refcode-32m' --type q8_0 -o '" + q8 + "'";
      if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not make %s (%s)\n", q8.c_str(), cmd.c_str());
    }
    if (fs::exists(q8)) models.push_back(q8);
  }
  std::printf("bench_engine: %d threads, simd %s, prompt %d tokens, generation %d tokens, best of %d\n", threads,
              cpu::simd_level(), pp, tg, reps);
  std::printf("empty parallel_for over %d threads: %.2f us\n", threads, pool_overhead_us(threads));
  std::printf("%-40s %12s %12s %8s %12s %12s %8s\n", "model", "samq pp t/s", "llama pp", "ratio", "samq tg t/s",
              "llama tg", "ratio");
  for (const auto& m : models) {
    const Speed s = bench_samq(m, pp, tg, reps, only);
    Speed l;
    const bool ok = llama && bench_llamacpp(m, threads, pp, tg, reps, &l);
    const std::string name = fs::path(m).filename().string();
    if (ok)
      std::printf("%-40s %12.1f %12.1f %7.2fx %12.1f %12.1f %7.2fx\n", name.c_str(), s.pp, l.pp, s.pp / l.pp, s.tg,
                  l.tg, s.tg / l.tg);
    else
      std::printf("%-40s %12.1f %12s %8s %12.1f %12s %8s\n", name.c_str(), s.pp, "n/a", "", s.tg, "n/a", "");
    if (batch > 1) {
      const double one = bench_batched(m, 1, tg, reps), many = bench_batched(m, batch, tg, reps);
      std::printf("  decode of %d sequences per step: %.1f tok/s aggregate, %.2fx one sequence (%.1f tok/s)\n", batch,
                  many, many / one, one);
    }
  }
  return 0;
}
