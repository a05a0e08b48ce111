// A sensitivity report without measurements for a source model: its tensors in file order
// with names, shapes, quantizable flags (llama.cpp's rule: >= 2-D, name ends in "weight",
// not a norm) and the exact gguf_overhead_bytes. Enough for the preset and threshold-free
// policies (presets need only names and shapes), and the frame `samq analyze` fills in.
#pragma once
#include <vector>

#include "export/source_model.h"
#include "plan/sensitivity.h"

namespace samq {

bool llama_quantizable(const SourceTensor& t);

// candidates: types to list for each quantizable tensor (those its row length allows), with
// exact bytes and dloss 0; non-quantizable tensors get the single candidate f32.
plan::Sensitivity sensitivity_skeleton(const SourceModel& src, const std::vector<GgmlType>& candidates = {});

}  // namespace samq
