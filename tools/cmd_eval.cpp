// samq eval: perplexity exactly as llama-perplexity, and KL divergence against a base model
// or a saved base-logits file (library: src/eval/perplexity.h).
#include <cstdio>

#include <nlohmann/json.hpp>

#include "backend/ops.h"
#include "command.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/sha256.h"
#include "device_option.h"
#include "eval/perplexity.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace samq::cli {
namespace {

struct EvalArgs {
  std::string model, text, base, base_logits, save_logits, json_out;
  int64_t ctx = 512, chunks = -1, text_bytes = -1;
  DeviceOption device;
};

int run_eval(const EvalArgs& a) {
  if (!a.base.empty() && !a.base_logits.empty()) fail("give either --base or --base-logits, not both");
  if (a.text.empty() && a.base_logits.empty()) fail("--text FILE is required (unless --base-logits gives the tokens)");
  const Backend be = a.device.resolve();
  auto model = Model::load(a.model, *be.ops);
  std::fprintf(stderr, "samq eval: %s (%s, %lld layers, %lld threads, %s ops, device %s)\n", a.model.c_str(),
               model->hparams.arch.c_str(), (long long)model->hparams.n_layer, (long long)num_threads(),
               be.ops->name(), be.device.c_str());
  const Tokenizer tok = load_tokenizer(*model);
  std::vector<int32_t> tokens;
  std::string text_sha;
  if (!a.text.empty()) {
    std::string text = read_file(a.text);
    if (a.text_bytes >= 0 && size_t(a.text_bytes) < text.size()) text.resize(size_t(a.text_bytes));
    text_sha = sha256_hex(text.data(), text.size());
    tokens = tokenize_eval_text(tok, text);
  }
  std::optional<BaseLogits> base;
  if (!a.base.empty()) base = BaseLogits::from_model(Model::load(a.base, *be.ops), *be.ops);
  if (!a.base_logits.empty()) base = BaseLogits::from_file(a.base_logits);
  EvalOptions opt;
  opt.ctx = a.ctx;
  opt.max_chunks = a.chunks;
  BaseLogitsFile save;
  const int32_t bos = tok.add_bos_default() ? tok.bos() : -1;
  const EvalResult r = evaluate(*model, *be.ops, tokens, bos, opt, base ? &*base : nullptr,
                                a.save_logits.empty() ? nullptr : &save);
  std::printf("chunks %lld x ctx %lld, %lld scored tokens, %.1f tokens/s\n", (long long)r.n_chunk,
              (long long)r.n_ctx, (long long)r.n_scored, r.tokens_per_second);
  std::printf("PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
  if (r.has_base) {
    std::printf("base PPL = %.4f, PPL ratio = %.5f (ln ratio %.5f +/- %.5f)\n", r.base_ppl, r.ppl_ratio,
                r.ln_ppl_ratio, r.ln_ppl_ratio_err);
    std::printf("KLD mean = %.6f +/- %.6f, median %.6f, p99 %.6f, max %.6f\n", r.kld_mean, r.kld_err, r.kld_median,
                r.kld_p99, r.kld_max);
    std::printf("same top-1 = %.3f %% +/- %.3f, RMS dp = %.3f %%\n", r.same_top_pct, r.same_top_err, r.rms_dp_pct);
  }
  if (!a.save_logits.empty()) {
    save.text_sha256 = text_sha;
    save.save(a.save_logits);
    std::fprintf(stderr, "saved base logits to %s\n", a.save_logits.c_str());
  }
  if (!a.json_out.empty()) {
    nlohmann::ordered_json extra;
    extra["model"] = {{"path", a.model}, {"architecture", model->hparams.arch}};
    if (!a.text.empty())
      extra["text"] = {{"path", a.text}, {"sha256", text_sha}, {"bytes", a.text_bytes}, {"tokens", tokens.size()}};
    if (!a.base.empty()) extra["base"] = {{"path", a.base}};
    if (!a.base_logits.empty()) extra["base_logits"] = {{"path", a.base_logits}};
    extra["threads"] = num_threads();
    extra["device"] = be.device;
    write_file_atomic(a.json_out, eval_result_json(r, extra.dump()));
  }
  return 0;
}

}  // namespace

SAMQ_COMMAND(eval, 50, "Perplexity and KL divergence against a base, as llama-perplexity", [](CLI::App& sub) {
  auto a = std::make_shared<EvalArgs>();
  sub.add_option("model", a->model, "Model to evaluate: GGUF file or HF directory")->required();
  sub.add_option("--text", a->text, "Evaluation text file (tokenized whole, no special-token parsing)");
  sub.add_option("--text-bytes", a->text_bytes, "Use only the first N bytes of the text");
  sub.add_option("--ctx", a->ctx, "Tokens per chunk (second half of each chunk is scored)")->capture_default_str();
  sub.add_option("--chunks", a->chunks, "Evaluate at most N chunks (default: all)");
  sub.add_option("--base", a->base, "Base model (GGUF or HF dir) for KL divergence");
  sub.add_option("--base-logits", a->base_logits, "Saved base logits (from --save-logits) for KL divergence");
  sub.add_option("--save-logits", a->save_logits, "Save this model's logits as a base for later runs");
  sub.add_option("--json", a->json_out, "Write every figure to this JSON file (eval.json)");
  a->device.declare(sub);
  return [a] { return run_eval(*a); };
});

}  // namespace samq::cli
