// samq generate: stream a continuation of a prompt; prints prompt and generation speed.
#include <chrono>
#include <cstdio>

#include "backend/ops.h"
#include "command.h"
#include "core/error.h"
#include "core/parallel.h"
#include "device_option.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/tokenizer.h"

namespace samq::cli {
namespace {

struct GenArgs {
  std::string model, prompt;
  int n = 64;
  int64_t ctx = 0;
  SamplerParams sp;
  bool ignore_eos = false;
  DeviceOption device;
};

int run_generate(GenArgs& a) {
  using clk = std::chrono::steady_clock;
  const Backend be = a.device.resolve();
  std::fprintf(stderr, "samq generate: %s, %d threads, device %s\n", a.model.c_str(), num_threads(), be.device.c_str());
  auto m = Model::load(a.model, *be.ops);
  const Tokenizer tok = load_tokenizer(*m);
  std::vector<int32_t> ids = tok.encode(a.prompt, tok.add_bos_default() && tok.bos() >= 0, false);
  if (ids.empty()) fail("the prompt tokenizes to nothing");
  const int64_t n_ctx = a.ctx > 0 ? a.ctx : int64_t(ids.size()) + a.n;
  if (int64_t(ids.size()) + a.n > n_ctx) fail("prompt ({} tokens) + -n {} exceeds --ctx {}", ids.size(), a.n, n_ctx);
  KvCache cache(*m, n_ctx);
  Sampler sampler(a.sp);
  std::fputs(a.prompt.c_str(), stdout);
  std::fflush(stdout);
  const auto t0 = clk::now();
  Batch b;
  b.add(&cache, ids);
  forward(*m, *be.ops, b);
  const auto t1 = clk::now();
  int generated = 0;
  std::vector<int32_t> out;
  for (; generated < a.n; ++generated) {
    const int32_t next = sampler.sample(b.seqs[0].logits.data(), m->hparams.n_vocab);
    if (!a.ignore_eos && tok.is_eog(next)) break;
    out.push_back(next);
    std::fputs(tok.token_to_piece(next).c_str(), stdout);
    std::fflush(stdout);
    if (generated + 1 == a.n) {
      ++generated;
      break;
    }
    b.seqs[0].tokens = {next};
    forward(*m, *be.ops, b);
  }
  const auto t2 = clk::now();
  std::fputc('\n', stdout);
  const double tp = std::chrono::duration<double>(t1 - t0).count();
  const double tg = std::chrono::duration<double>(t2 - t1).count();
  std::fprintf(stderr, "prompt: %zu tokens in %.3f s (%.1f tokens/s); generation: %d tokens in %.3f s (%.1f tokens/s); %d threads\n",
               ids.size(), tp, double(ids.size()) / tp, generated, tg, generated > 0 ? generated / tg : 0.0, num_threads());
  return 0;
}

}  // namespace

SAMQ_COMMAND(generate, 60, "Generate text from a prompt (streams tokens, prints speed)", [](CLI::App& sub) {
  auto a = std::make_shared<GenArgs>();
  sub.add_option("model", a->model, "GGUF file or HF directory")->required();
  sub.add_option("-p,--prompt", a->prompt, "Prompt text")->required();
  sub.add_option("-n,--n-predict", a->n, "Tokens to generate")->capture_default_str();
  sub.add_option("--ctx", a->ctx, "Context size (default: prompt + n)");
  sub.add_option("--temp", a->sp.temp, "Temperature (0 = greedy)")->capture_default_str();
  sub.add_option("--top-k", a->sp.top_k, "Top-k (0 = off)")->capture_default_str();
  sub.add_option("--top-p", a->sp.top_p, "Top-p (1 = off)")->capture_default_str();
  sub.add_option("--seed", a->sp.seed, "Random seed")->capture_default_str();
  sub.add_flag("--ignore-eos", a->ignore_eos, "Keep generating after an end-of-generation token");
  a->device.declare(sub);
  return [a] { return run_generate(*a); };
});

}  // namespace samq::cli
