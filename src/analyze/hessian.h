// Input Hessians of the linear layers, H = sum over calibration tokens of x x^T (x: the matmul's
// input row), for Hessian-aware quantization (quant/gptq.h), collected from the forward hooks.
//
// One entry per distinct input: per layer attn_q/attn_k/attn_v share "attn_norm", attn_output
// reads "kq_out", ffn_gate/ffn_up share "ffn_norm", ffn_down reads "ffn_act"; the output matrix
// reads "result_norm" (all positions). token_embd (a lookup) has none. MoE: one entry per expert
// matrix, "<weight>.<expert>" (hessian_expert_name), from the rows routed to that expert (gate and
// up experts share theirs); none for an expert no calibration token reached (the layer-streamed
// source, hessian_stream.h, makes the same entries and returns an empty mean for such an expert).
// diag(H) / count equals the imatrix (analyze/imatrix.h) of the same tokens.
//
// File format (GGUF, docs/artifacts.md "hessian"): general.type = "samq.hessian";
// samq.hessian.chunk_count / chunk_size (u32), samq.hessian.calib_sha256 (str);
// per entry, named after the first weight it serves: "<weight>.hessian" F32 ne {n, n}
// (the sum, symmetric, row-major) and "<weight>.counts" F32 ne {1} (tokens); the other weights
// sharing that input are listed in the string array samq.hessian.aliases as "weight=entry".
//
// Memory: accumulation is in double, n^2 per entry (refcode-32m: 33 MB in all). For a 70B model
// (n up to 28672) the collector would accumulate one layer at a time (start_layer/start_input of
// the forward, saving the layer's input), in f32 via cblas_ssyrk per chunk with double
// per-chunk reduction, and store F16 or only the upper triangle; readers memory-map the file and
// touch one entry at a time (HessianFile::mean in export/quantize_model.h copies one entry).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/ops.h"
#include "backend/ops_backward.h"
#include "model/model.h"

namespace samq {

struct HessianEntry {
  std::string name;                 // first weight served, e.g. blk.0.attn_q.weight
  std::vector<std::string> serves;  // all weights reading this input (name first)
  int64_t n = 0;                    // input columns
  std::vector<double> sum;          // (n, n) sum of x x^T
  double count = 0;                 // tokens
};

struct Hessians {
  std::vector<HessianEntry> entries;  // sorted by name
  uint32_t chunk_count = 0, chunk_size = 0;
  std::string calib_sha256;
  std::string device;  // where it was collected (samq.hessian.device)
};

// Forward-only collection over chunks (each a fresh sequence), with a progress bar.
Hessians collect_hessians(const Model& m, const BackwardOps& bops, const std::vector<std::vector<int32_t>>& chunks,
                          bool progress = true);

void write_hessian_gguf(const std::string& path, const Hessians& h);  // atomic (temp + rename)

// The entry name of matrix `expert` of a stacked expert tensor: "blk.0.ffn_up_exps.weight.3".
std::string hessian_expert_name(const std::string& weight, int64_t expert);

// Reading (weight -> mean Hessian): HessianFile in export/quantize_model.h.

}  // namespace samq
