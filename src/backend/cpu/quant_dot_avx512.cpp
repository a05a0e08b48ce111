// AVX-512 kernels of quant_dot.h (F, BW, VL, DQ, VNNI): the 256-bit kernels of quant_dot_x86.h
// compiled with AVX-512VL/VNNI, so u8·s8 dot products of the one-scale-per-block types use
// vpdpbusd and the compiler has 32 vector registers.
#include <immintrin.h>

#include <cstring>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/quant_dot_kernels.h"
#include "core/fp16.h"
#include "quant/blocks.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
#define SAMQ_QDOT_VNNI 1
namespace samq::cpu::qdot::x86_avx512 {
#include "backend/cpu/quant_dot_x86.h"
}  // namespace samq::cpu::qdot::x86_avx512
#undef SAMQ_QDOT_VNNI
#pragma GCC pop_options

namespace samq::cpu::qdot {
Kernel kernel_avx512(GgmlType t) { return x86_avx512::kernel_for(t); }
}  // namespace samq::cpu::qdot
