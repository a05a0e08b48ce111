// Layer streaming: the analysis (and the Hessian collection) with memory that follows one layer,
// not the model, on any backend.
//
// Execution (SensitivityAccumulator::run_streamed, analyze/fisher_stream.cpp; Hessians:
// analyze/hessian_stream.cpp):
//   - forward layer by layer over the whole calibration set; the residual stream entering each
//     layer is kept per chunk in host memory, or in files under --scratch DIR;
//   - backward layer by layer from the top, recomputing each layer from its checkpoint;
//   - a layer's weights are prepared (uploaded to the device) once per pass and dropped after,
//     with the next layer's mapped bytes read ahead while one computes;
//   - a layer's statistics are reduced to each tensor's per-candidate Δloss as soon as its last
//     chunk is done, then freed.
// The order of every floating-point operation per chunk is the in-memory path's, so the results
// are the same bits (tests/analyze/test_layer_stream.cpp).
//
// Memory plan: plan_analysis_memory estimates the peak device and host memory of the in-memory
// and the streamed pass, picks one (auto: in-memory when it fits the caps), moves the checkpoints
// to --scratch when only that fits, and refuses with the smallest caps that would work.
// Chunk size is the calibration context (--ctx), a property of the measurement, so the
// executor does not change it; what it chooses is in-memory vs streamed and host vs scratch.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "backend/ops.h"
#include "model/model.h"

namespace samq {

// "80GB", "64GiB", "512MB", "1.5TB", plain bytes; 0 for empty. Errors name the option.
int64_t parse_memory_size(const std::string& text, const char* option);
std::string format_bytes(int64_t bytes);  // "1.23 GiB"

struct MemoryCaps {
  int64_t gpu = 0, host = 0;  // 0: no cap (the device's / machine's size)
};

enum class StreamMode { kAuto, kOn, kOff };
StreamMode parse_stream_mode(const std::string& s);  // auto|on|off

struct MemoryEstimate {
  int64_t device = 0, host = 0;
  std::vector<std::pair<std::string, int64_t>> device_lines, host_lines;
};

struct AnalysisMemoryPlan {
  bool streamed = false;
  bool scratch = false;  // checkpoints in --scratch files
  MemoryEstimate chosen, in_memory, streamed_est;
  std::string text() const;  // printed before the run starts
};

// n_chunks chunks of ctx tokens; full: the exact Fisher diagonal is kept (--fisher full).
// backend_on_host: the backend's memory is host memory (CPU), so device bytes count as host.
// device_round_trips: the predictions' round trips run on the device (AnalyzeOptions::predict_device).
AnalysisMemoryPlan plan_analysis_memory(const Model& m, bool backend_on_host, int64_t n_chunks, int64_t ctx, bool full,
                                        const MemoryCaps& caps, StreamMode mode, const std::string& scratch_dir,
                                        bool device_round_trips = false);

}  // namespace samq
