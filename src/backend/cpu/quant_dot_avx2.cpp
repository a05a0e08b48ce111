// AVX2 kernels of quant_dot.h (with FMA and F16C): the 256-bit kernels of quant_dot_x86.h
// compiled for AVX2, u8·s8 dot products through maddubs + madd.
#include <immintrin.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/quant_dot_kernels.h"
#include "core/fp16.h"
#include "quant/blocks.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define SAMQ_QDOT_VNNI 0
namespace samq::cpu::qdot::x86_avx2 {
#include "backend/cpu/quant_dot_x86.h"
}  // namespace samq::cpu::qdot::x86_avx2
#undef SAMQ_QDOT_VNNI
#pragma GCC pop_options

namespace samq::cpu::qdot {
Kernel kernel_avx2(GgmlType t) { return x86_avx2::kernel_for(t); }
}  // namespace samq::cpu::qdot
