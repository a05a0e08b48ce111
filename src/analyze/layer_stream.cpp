// Memory plan of the analysis (analyze/layer_stream.h).
#include "analyze/layer_stream.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include <fmt/format.h>

#include "core/byte_size.h"
#include "core/error.h"

namespace samq {

int64_t parse_memory_size(const std::string& text, const char* option) {
  return text.empty() ? 0 : parse_byte_size(text, option);
}

std::string format_bytes(int64_t b) {
  const double x = double(b);
  if (x >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", x / (1024.0 * 1024 * 1024));
  if (x >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", x / (1024.0 * 1024));
  return fmt::format("{:.0f} KiB", x / 1024.0);
}

StreamMode parse_stream_mode(const std::string& s) {
  if (s == "auto") return StreamMode::kAuto;
  if (s == "on") return StreamMode::kOn;
  if (s == "off") return StreamMode::kOff;
  fail("--stream must be auto, on or off, not '{}'", s);
}

namespace {

struct Sizes {
  int64_t params = 0, weight_bytes = 0, globals_bytes = 0;
  int64_t layer_params_max = 0, layer_bytes_max = 0, largest_tensor = 0;
  int64_t head_params = 0, embd_params = 0;
};

Sizes sizes_of(const Model& m) {
  Sizes s;
  for_each_tensor(m.weights, [&](const Tensor& t) {
    s.params += t.n_elements();
    s.weight_bytes += t.n_bytes();
    s.largest_tensor = std::max(s.largest_tensor, t.n_elements());
  });
  for (const Tensor* t : {&m.weights.token_embd, &m.weights.output, &m.weights.output_norm, &m.weights.rope_freqs})
    if (t->present()) s.globals_bytes += t->n_bytes();
  for (int l = 0; l < int(m.hparams.n_layer); ++l) {
    s.layer_bytes_max = std::max(s.layer_bytes_max, m.layer_bytes(l));
    int64_t p = 0;
    const LayerWeights& L = m.weights.layers[size_t(l)];
    for (const Tensor* t : {&L.attn_norm, &L.attn_q, &L.attn_k, &L.attn_v, &L.attn_q_bias, &L.attn_k_bias,
                            &L.attn_v_bias, &L.attn_q_norm, &L.attn_k_norm, &L.attn_output, &L.attn_output_bias,
                            &L.ffn_norm, &L.ffn_gate, &L.ffn_up, &L.ffn_down, &L.ffn_gate_inp, &L.ffn_gate_exps,
                            &L.ffn_up_exps, &L.ffn_down_exps})
      if (t->present()) p += t->n_elements();
    s.layer_params_max = std::max(s.layer_params_max, p);
  }
  s.head_params = m.weights.lm_head().n_elements() + m.weights.output_norm.n_elements();
  s.embd_params = m.weights.token_embd.n_elements();
  return s;
}

void add(MemoryEstimate& e, bool device, const std::string& what, int64_t bytes) {
  if (bytes <= 0) return;
  (device ? e.device_lines : e.host_lines).emplace_back(what, bytes);
  (device ? e.device : e.host) += bytes;
}

}  // namespace

AnalysisMemoryPlan plan_analysis_memory(const Model& m, bool on_host, int64_t n_chunks, int64_t ctx, bool full,
                                        const MemoryCaps& caps, StreamMode mode, const std::string& scratch_dir,
                                        bool device_round_trips) {
  const ModelHparams& h = m.hparams;
  const Sizes z = sizes_of(m);
  const int64_t L = h.n_layer, E = h.n_embd, V = h.n_vocab, F = h.n_ff, Wq = h.n_embd_q(), Wkv = h.n_embd_kv();
  const int64_t n = ctx, T = n_chunks * ctx, f4 = 4;
  const int64_t acts_layer = n * (8 * E + 2 * Wq + 2 * Wkv + 3 * F) * f4;  // recorded for backward
  const int64_t work = n * (4 * E + 2 * Wq + 2 * Wkv + 2 * F) * f4 + n * (2 * E + 3 * F + 2 * Wq + 2 * Wkv) * f4;
  const int64_t logits = 2 * n * V * f4;  // logits and dL/dlogits
  const int64_t scores = on_host ? 0 : int64_t(512) << 20;
  const int64_t process = int64_t(256) << 20;  // code, tokenizer, calibration text, JSON
  const int64_t fisher_mul = full ? 3 : 1;     // chunk gradient (+ two Fisher diagonals)

  // in memory: everything resident for the whole run
  MemoryEstimate in;
  add(in, true, "weights (all layers)", z.weight_bytes);
  add(in, true, full ? "gradient + Fisher diagonals (model, text labels), f32" : "gradient, f32",
      fisher_mul * z.params * f4);
  add(in, true, "recorded activations (all layers, one chunk)", L * acts_layer);
  add(in, true, "work buffers, logits, KV cache", work + logits + L * 2 * n * Wkv * f4 + scores);
  add(in, false, "process, calibration tokens", process);
  // round trips on the GPU: one tensor's f32 values and Fisher diagonals, the kernels' stacks
  const int64_t round_trips = device_round_trips ? (full ? 3 : 1) * z.largest_tensor * f4 + (int64_t(1) << 30) : 0;
  add(in, true, "candidate round trips: one tensor and its Fisher diagonals, kernel stacks", round_trips);
  if (!on_host) add(in, false, "mapped weights (read for upload and predictions)", z.weight_bytes);
  if (full) add(in, false, "Fisher diagonals copied to the host", 2 * z.params * f4);

  // streamed: one layer (or the head, or the embedding) at a time
  MemoryEstimate st;
  const int64_t group = std::max({z.layer_params_max, z.head_params, z.embd_params});
  add(st, true, "weights: embedding, head, one layer", z.globals_bytes + z.layer_bytes_max);
  add(st, true, full ? "gradient + Fisher diagonals of one layer/head, f32" : "gradient of one layer/head, f32",
      fisher_mul * group * f4);
  add(st, true, "recorded activations (one layer, one chunk)", acts_layer + 2 * n * E * f4);
  add(st, true, "work buffers, logits, KV cache, residual in/out", work + logits + 2 * n * Wkv * f4 + 4 * n * E * f4 + scores);
  add(st, false, "process, calibration tokens", process);
  add(st, true, "candidate round trips: one tensor and its Fisher diagonals, kernel stacks", round_trips);
  add(st, false, "mapped weights: embedding, head, two layers", z.globals_bytes + 2 * z.layer_bytes_max);
  if (full) add(st, false, "Fisher diagonals of one layer/head on the host", 2 * group * f4);
  add(st, false, "predictions: one tensor's f32 values and round trip", 2 * z.largest_tensor * f4);
  const int64_t checkpoints = (L + 1) * T * E * f4 + 2 * T * E * f4;

  auto total_host = [&](const MemoryEstimate& e) { return on_host ? e.host + e.device : e.host; };
  auto fits = [&](const MemoryEstimate& e) {
    const bool dev_ok = on_host || caps.gpu == 0 || e.device <= caps.gpu;
    const bool host_ok = caps.host == 0 || total_host(e) <= caps.host;
    return dev_ok && host_ok;
  };
  AnalysisMemoryPlan p;
  p.in_memory = in;
  MemoryEstimate st_host = st, st_disk = st;
  add(st_host, false, fmt::format("residual checkpoints: {} boundaries + 2 gradients x {} tokens x {} floats", L + 1, T, E),
      checkpoints);
  p.streamed_est = st_host;
  const bool can_scratch = !scratch_dir.empty();
  if (mode != StreamMode::kOn && (mode == StreamMode::kOff || fits(in))) {
    p.chosen = in;
    p.streamed = false;
  } else if (fits(st_host) || !can_scratch) {
    p.chosen = st_host;
    p.streamed = true;
  } else {
    p.chosen = st_disk;
    p.streamed = true;
    p.scratch = true;
    p.chosen.host_lines.emplace_back(fmt::format("residual checkpoints: {} in {}", format_bytes(checkpoints), scratch_dir), 0);
  }
  if (!fits(p.chosen)) {
    // the smallest caps that would work, with the best choice available
    const MemoryEstimate& best = can_scratch ? st_disk : st_host;
    std::string need;
    if (!on_host && caps.gpu && p.chosen.device > caps.gpu)
      need += fmt::format(" --max-gpu-memory {} (the {} pass needs {});", format_bytes(std::min(best.device, p.chosen.device)),
                          p.streamed ? "streamed" : "in-memory", format_bytes(p.chosen.device));
    if (caps.host && total_host(p.chosen) > caps.host)
      need += fmt::format(" --max-host-memory {}{};", format_bytes(std::min(total_host(best), total_host(p.chosen))),
                          can_scratch ? "" : fmt::format(" (or {} with --scratch DIR)", format_bytes(total_host(st_disk))));
    fail("analyze: the memory caps cannot be met: at least{}\n{}", need, p.text());
  }
  return p;
}

std::string AnalysisMemoryPlan::text() const {
  std::string s = fmt::format("memory plan: {} pass{}\n", streamed ? "layer-streamed" : "in-memory",
                              scratch ? " (checkpoints on disk)" : "");
  if (!chosen.device_lines.empty()) {
    s += fmt::format("  device {:>12}\n", format_bytes(chosen.device));
    for (const auto& [w, b] : chosen.device_lines) s += fmt::format("    {:>12}  {}\n", format_bytes(b), w);
  }
  s += fmt::format("  host   {:>12}\n", format_bytes(chosen.host));
  for (const auto& [w, b] : chosen.host_lines)
    s += b ? fmt::format("    {:>12}  {}\n", format_bytes(b), w) : fmt::format("    {:>12}  {}\n", "", w);
  return s;
}

}  // namespace samq
