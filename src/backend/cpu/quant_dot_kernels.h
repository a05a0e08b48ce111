// Private to the quant_dot*.cpp files: the kernel tables each instruction-set file provides.
#pragma once
#include <cstdint>

#include "core/ggml_type.h"

namespace samq::cpu::qdot {

// One call: rows [0, nrows) of w (row_bytes apart) against n_tok activation rows of x
// (x_bytes apart), nb blocks of the weight type per row; y[t * y_stride + r].
struct Args {
  const uint8_t* w;
  int64_t row_bytes;
  int64_t nrows;
  const uint8_t* x;
  int64_t x_bytes;
  int64_t n_tok;
  int64_t nb;
  float* y;
  int64_t y_stride;
};
using Kernel = void (*)(const Args&);

// nullptr where the file has no kernel for the type.
Kernel kernel_ref(GgmlType t);
Kernel kernel_avx2(GgmlType t);
Kernel kernel_avx512(GgmlType t);

}  // namespace samq::cpu::qdot
