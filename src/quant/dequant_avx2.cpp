// AVX2 dequantizers (placeholder until the vector paths land): none yet.
#include "quant/dequant_fast.h"

namespace samq {
namespace {
bool g_simd = true;
}
bool dequant_simd_enabled() { return false && g_simd; }
void set_dequant_simd(bool on) { g_simd = on; }
bool dequantize_row_fast(GgmlType, const void*, float*, int64_t) { return false; }
}  // namespace samq
