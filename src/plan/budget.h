// Budgets: what the user asks for (`--target-size 18MB`, `--target-bpw 4.5`,
// `--fit-memory 80GB --ctx 8192`, `--max-kld 0.02`) and how it becomes a byte count.
#pragma once
#include <cstdint>
#include <string>

#include "plan/sensitivity.h"

namespace samq::plan {

// "20542368", "18MB", "18.5 MB", "40GB", "2GiB", "512KiB": decimal units (kB, MB, GB, TB = 10^3k)
// and binary ones (KiB, MiB, GiB, TiB); a bare number is bytes. Throws naming `what`.
int64_t parse_size(const std::string& text, const std::string& what);

// Memory a llama.cpp-style CPU runtime needs beyond the weights for `ctx` tokens per sequence
// and `parallel` sequences: the K and V caches (n_layer · ctx · parallel · n_embd_kv each, at
// kv_type) plus the compute buffer of one 512-token micro-batch with llama.cpp's defaults (flash
// attention on CPU): the larger of its output stage (logits) and a layer's FFN stage with the f16
// KQ mask of the micro-batch against the whole context (see budget.cpp).
struct MemoryEstimate {
  int64_t kv_bytes = 0;
  int64_t compute_bytes = 0;
  int64_t total() const { return kv_bytes + compute_bytes; }
};
MemoryEstimate estimate_runtime_memory(const Sensitivity& s, int64_t ctx, const std::string& kv_type,
                                       int parallel);

}  // namespace samq::plan
