// The planner's input: sensitivity.json (schema samq.sensitivity/1, docs/artifacts.md), written
// by `samq analyze`. One record per tensor of the output GGUF, in file order, each with the
// candidate types the analysis measured (exact bytes and the predicted Δloss in nats).
// Non-goal: this module never touches the model; it only reads the report.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/ggml_type.h"

namespace samq::plan {

struct Candidate {
  GgmlType type;
  int64_t bytes = 0;   // unpadded tensor data bytes at this type
  double dloss = 0;    // predicted increase of the mean per-token loss (nats)
};

struct TensorSensitivity {
  std::string name;           // GGUF name, e.g. blk.0.attn_q.weight
  int layer = -1;             // -1 for tensors outside the blocks
  std::string kind;           // attn_q, ffn_down, token_embd, output, ...
  int64_t rows = 1, cols = 1; // (out_features, in_features); cols = ggml ne[0]
  int64_t params = 0;
  std::string source_type;
  double grad_norm = 0;
  double fisher_trace = 0;
  bool quantizable = true;
  std::vector<Candidate> candidates;  // as listed in the file (order kept)

  const Candidate* find(GgmlType t) const;
};

// Model facts the planner can use; shapes give most, the optional ones come from
// sensitivity.json's "model" object when the analysis wrote them.
struct ModelFacts {
  std::string path, sha256, architecture;
  int n_layer = 0;
  int64_t n_params = 0;
  int n_head = 0, n_head_kv = 0, head_dim = 0;  // 0 = unknown
  int n_expert = 0;  // MoE experts per layer (0: dense, or an older sensitivity.json)
};

struct Sensitivity {
  std::string path;    // where it was read from (empty when built in memory)
  std::string sha256;  // of the file's bytes
  ModelFacts model;
  int64_t gguf_overhead_bytes = 0;
  std::vector<TensorSensitivity> tensors;
  nlohmann::json raw;  // the whole document, for fields the planner does not model

  int64_t total_params() const;
  const TensorSensitivity* find(const std::string& name) const;
};

// Parses and validates; errors name the file and the field (e.g. "tensors[3].candidates.q4_K.bytes").
Sensitivity parse_sensitivity(const nlohmann::json& j, const std::string& path_for_errors);
Sensitivity read_sensitivity(const std::string& path);

// The same report with every candidate's dloss replaced by its signals[signal] (from s.raw);
// "" or "dloss" returns s unchanged. Throws naming the tensor and type when a quantizable
// tensor's candidate lacks that signal, and lists the signals the report has.
Sensitivity with_signal(const Sensitivity& s, const std::string& signal);

// Layer index from a GGUF name ("blk.12.ffn_up.weight" -> 12), -1 otherwise; and its kind
// ("ffn_up"; "token_embd", "output", "output_norm" for the others).
int layer_of(const std::string& name);
std::string kind_of(const std::string& name);

}  // namespace samq::plan
