// The grid of values one quantized block can represent once its scales are fixed, per element,
// and packing of chosen integer levels back into the block (GPTQ, quant/gptq.h).
//
// For an element e of a block of type t: value(q) = a * float(table[q]) when table is set (IQ4),
// else a * float(q) - b, for integer levels q in [qmin, qmax]. a and b are computed in float
// exactly as the type's dequantizer does (dequantize_row(pack(levels)) == value(levels)
// bit for bit; tests/quant/test_gptq_grid.cpp checks this for every type):
//   Q2_K  a = d*sc,  b = dmin*m, q 0..3      Q3_K a = d*sc(6-bit signed), b = 0, q -4..3
//   Q4_K  a = d*sc,  b = dmin*m, q 0..15     Q5_K a = d*sc, b = dmin*m, q 0..31
//   Q6_K  a = d*sc,  b = 0,      q -32..31   Q8_0 a = d, b = 0, q -128..127
//   Q4_0  a = d, b = 0, q -8..7              Q4_1 a = d, b = -m, q 0..15
//   Q5_0  a = d, b = 0, q -16..15            Q5_1 a = d, b = -m, q 0..31
//   IQ4_NL, IQ4_XS: a = d (XS: d*(ls-32)), lut: kvalues_iq4nl[q], q 0..15
#pragma once
#include <cstdint>

#include "core/ggml_type.h"
#include "quant/gptq_grid_impl.h"

namespace samq {

// ElemGrid (a, b, qmin, qmax, lut; value(q), nearest(w)) and the per-element grid and level
// packing behind the functions below are one source for the CPU and the GPU (quant/gptq_grid_impl.h).

// True for the types below (block sizes 32 or 256).
bool grid_supported(GgmlType t);

// Elements per block of t (32 or 256).
int grid_block_size(GgmlType t);

// Grids of the block_size elements of one packed block.
void block_grid(GgmlType t, const void* blk, ElemGrid* out);

// Current integer levels of the block's elements (inverse of set_block_levels).
void get_block_levels(GgmlType t, const void* blk, int* levels);

// Replaces the block's level bits with `levels` (each within its element's [qmin, qmax]);
// scales, mins and d are left untouched. Throws samq::Error for an out-of-range level.
void set_block_levels(GgmlType t, void* blk, const int* levels);

}  // namespace samq
