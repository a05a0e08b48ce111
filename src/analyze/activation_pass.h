// What the imatrix and Hessian collectors (analyze/imatrix.h, analyze/hessian.h) share: which
// matmul weights read each hooked activation, the forward pass over the calibration chunks, and
// the "sum tensor, count tensor" pair each of their GGUF entries is written as.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "backend/ops.h"
#include "model/forward.h"
#include "model/model.h"

namespace samq {

class GgufWriter;

// Activation name -> kinds of the blk.N weights that read it (attn_q/k/v share "attn_norm",
// attn_output reads "kq_out", ffn_gate/up share "ffn_norm", ffn_down reads "ffn_act").
const std::map<std::string, std::vector<std::string>>& activation_readers();

// "blk.<layer>.<kind>.weight" for each kind.
std::vector<std::string> layer_weight_names(int layer, const std::vector<std::string>& kinds);

// Runs forward over every chunk (each a fresh sequence) with opt (its hooks collect), with logits
// for every position when `logits`, and a progress bar named `label` when progress is set.
void forward_chunks(const Model& m, const Ops& ops, const std::vector<std::vector<int32_t>>& chunks,
                    const ForwardOptions& opt, bool logits, const char* label, bool progress);

// Tensor data `index` (then index + 1): the sums as F32, then the count as one F32.
void write_sum_and_count(GgufWriter& w, size_t& index, const std::vector<double>& sum, double count);

}  // namespace samq
