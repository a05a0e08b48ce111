// The importance matrix: per input column of every matmul weight, the sum of x^2 over the
// calibration tokens and the number of tokens (llama-imatrix's statistic,
// ../shared/docs/ggml-formats.md §5), collected from the engine's forward hooks, and its
// llama.cpp GGUF file format (general.type = "imatrix", imatrix.datasets / chunk_count /
// chunk_size, tensors "<weight>.in_sum2" (F32, ne {cols, 1}) and "<weight>.counts" (F32,
// ne {1, 1}), sorted by name) that llama-quantize and `samq quantize --imatrix` read.
//
// As llama-imatrix by default: every blk.* matmul weight gets an entry (q/k/v share their
// input, as do gate/up); token_embd (a lookup) and output do not. MoE: the router ffn_gate_inp
// gets one, and each 3-D expert tensor one of n_expert rows: in_sum2 ne {cols, n_expert} from
// the tokens routed to each expert, counts ne {1, n_expert} (llama-imatrix's MUL_MAT_ID entries;
// an expert never routed to has count 0).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "backend/ops.h"
#include "backend/ops_backward.h"
#include "model/model.h"

namespace samq {

struct ImatrixEntry {
  std::string name;        // weight name, e.g. blk.0.attn_q.weight
  std::vector<double> sum2;  // (cols) sum of x^2; stacked experts: (n_mat * cols), expert-major
  double count = 0;          // token rows (stacked experts: their sum)
  std::vector<double> counts;  // stacked experts only: token rows routed to each (n_mat)
};

struct Imatrix {
  std::vector<ImatrixEntry> entries;  // sorted by name
  std::vector<std::string> datasets;
  uint32_t chunk_count = 0, chunk_size = 0;

  const ImatrixEntry* find(const std::string& name) const;
  // Per-column mean of x^2 (what quantizers take as importance), empty if absent; stacked experts:
  // n_mat * cols values, 1.0 for an expert with count 0 (llama-quantize's rule).
  std::vector<float> mean(const std::string& name) const;
};

// True for the weights llama-imatrix collects by default.
bool imatrix_collects(const std::string& weight_name);

// Forward-only collection over chunks (each a fresh sequence) on bops' backend, with a progress
// bar.
Imatrix collect_imatrix(const Model& m, const BackwardOps& bops, const std::vector<std::vector<int32_t>>& chunks,
                        bool progress = true);

void write_imatrix_gguf(const std::string& path, const Imatrix& im);
Imatrix read_imatrix_gguf(const std::string& path);  // errors name the file and tensor

// Cosine similarity of two vectors (double accumulation); 1 for two zero vectors.
double cosine_similarity(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace samq
