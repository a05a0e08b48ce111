// samq synth: a shape-exact HF checkpoint with random weights, for scale and speed tests only.
#include <chrono>
#include <cstdio>

#include "command.h"
#include "core/error.h"
#include "export/synth.h"

namespace samq::cli {
namespace {

struct SynthArgs {
  std::string like, output, shard_size = "5GB", tokenizer;
  int64_t layers = 0;
  uint64_t seed = 0;
  bool config_only = false;
};

std::string like_help() {
  std::string h =
      "Shape to imitate (written config.json carries the real model's fields, num_hidden_layers = --layers):";
  for (const auto& s : synth_shapes()) h += "\n  " + s.like + ": " + s.description;
  return h;
}

std::function<int()> setup(CLI::App& sub) {
  auto a = std::make_shared<SynthArgs>();
  sub.footer(
      "These checkpoints are for scale and speed tests only (memory, throughput, wall time of analyze/quantize "
      "at a real model's shapes). Their weights are random, so quality figures (perplexity, KL divergence, "
      "sensitivity rankings) come from trained models only.\n\n"
      "Output: model-0000i-of-0000n.safetensors (BF16, cut like transformers' save_pretrained), "
      "model.safetensors.index.json, config.json, and the reference tokenizer (refcode-32m's tokenizer.json and "
      "tokenizer_config.json, 8192 tokens). config.json's vocab_size is the target model's (e.g. 128256), while "
      "the tokenizer is the reference one: samq pads its vocabulary to vocab_size with unused [PAD<i>] tokens, "
      "as for any checkpoint whose embedding has more rows than its tokenizer has tokens, so the checkpoint "
      "loads, tokenizes and runs; bos/eos_token_id are the reference tokenizer's.\n\n"
      "Weights: random BF16 with trained-like statistics: matmul weights N(0,1)/sqrt(cols) with log-normal "
      "per-row scales (sigma 0.25) and ~0.1% outlier input columns (x6); embedding N(0, 0.02^2); norm weights "
      "1 + 0.1 N(0,1) with ~0.2% channels x4; biases N(0, 0.05^2). Deterministic for (--like, --seed): the "
      "same bytes for any --threads, and a tensor depends only on the seed, its name and its shape (so "
      "--layers 4 and --layers 32 share their first four layers). Written as a stream (~128 MiB in memory), "
      "each shard to a temp file renamed when complete.\n\n"
      "Example: samq synth --like llama3-8b --layers 4 -o out/synth-8b-4L   (4 layers: ~3.9 GB)");
  sub.add_option("--like", a->like, like_help())->required();
  CLI::Option* layers_opt =
      sub.add_option("--layers", a->layers, "Layers to write: 1 up to the real model's count (default: all)");
  sub.add_option("--seed", a->seed, "Random seed")->capture_default_str();
  sub.add_option("-o,--output", a->output, "Directory to write (created if missing)")->required();
  sub.add_option("--shard-size", a->shard_size, "Largest shard, e.g. 5GB, 500MB, 2GiB (a larger tensor gets a shard alone)")
      ->capture_default_str();
  sub.add_option("--tokenizer", a->tokenizer,
                 "Directory of the reference tokenizer to copy (default: $SAMQ_SHARED_DIR/models/refcode-32m, "
                 "else ../shared/models/refcode-32m)");
  sub.add_flag("--config-only", a->config_only, "Write config.json and the tokenizer only, no weights");
  return [a, layers_opt]() {
    const auto t0 = std::chrono::steady_clock::now();
    SynthOptions o;
    o.like = a->like;
    o.layers = a->layers;
    o.seed = a->seed;
    o.config_only = a->config_only;
    o.tokenizer_dir = a->tokenizer;
    try {
      o.shard_bytes = parse_byte_size(a->shard_size);
    } catch (const Error& e) {
      fail("--shard-size: {}", e.what());
    }
    if (layers_opt->count() > 0 && a->layers < 1) fail("--layers {}: must be at least 1", a->layers);
    const SynthResult r = write_synth_checkpoint(o, a->output);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (a->config_only)
      std::fprintf(stderr, "synth: wrote %s: config.json (%s, %lld layers) and the reference tokenizer, %.2f s\n",
                   a->output.c_str(), r.like.c_str(), (long long)r.layers, s);
    else
      std::fprintf(stderr,
                   "synth: wrote %s: %s shape, %lld layers, %lld tensors, %.1f M params, %d shard(s), %.2f GB, %.2f s "
                   "(%.0f MB/s); random weights: for scale and speed tests only\n",
                   a->output.c_str(), r.like.c_str(), (long long)r.layers, (long long)r.n_tensors, r.n_params / 1e6,
                   r.n_shards, r.file_bytes / 1e9, s, s > 0 ? r.file_bytes / 1e6 / s : 0.0);
    return 0;
  };
}

}  // namespace

SAMQ_COMMAND(synth, 70, "Write a random HF checkpoint shaped like a real model (scale and speed tests only)", setup);

}  // namespace samq::cli
