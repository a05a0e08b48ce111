// Access to ../shared/golden/quant-golden.gguf (written by ggml itself) and ggml's error
// table quant-golden-errors.txt, shared by the quant tests.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "format/gguf.h"

namespace samq::test {

struct GgmlErrors {
  double rel_err = 0;          // as printed by the golden generator (6 decimals)
  double weighted_sq_err = 0;  // sum of imatrix[col] * (deq - row)^2
};

struct QuantGolden {
  GgufFile file;
  int64_t rows = 0, cols = 0;
  std::vector<float> x;        // `rows`, rows*cols
  std::vector<float> imatrix;  // cols
  // key: "<type>" or "<type>.imatrix"
  std::map<std::string, GgmlErrors> errors;

  const GgufTensorInfo& tensor(const std::string& name) const { return file.tensor(name); }
};

// Loaded once per process.
const QuantGolden& quant_golden();

// The types the golden file covers, in its README's order.
const std::vector<GgmlType>& golden_types();

}  // namespace samq::test
