// The CUDA backend: the op tables of backend/ops.h and backend/ops_backward.h on one NVIDIA
// GPU, with every activation in device memory. Built only when CMake finds nvcc
// (SAMQ_HAVE_CUDA); backend/device.h is how the rest of samq reaches it.
//
// Weights: Model::prepare_weights(cuda_ops(N)) uploads every tensor in its own ggml type
// (prepare_weight); matmuls read F32/F16/BF16 weights in place through cuBLAS with fp32
// accumulation, and dequantize other types (Q8_0, K-quants, ...) on the device first.
//
// Every op of a device is enqueued on that device's one stream in call order; download, the ops
// that return a value, and release wait for it. Results do not vary from run to run (no float
// atomics; reductions in fixed orders). Scratch stays within fixed budgets (256 MiB of weight
// tiles and activation copies, 512 MiB of attention scores per chunk), overridable with
// SAMQ_CUDA_SCRATCH_BYTES / SAMQ_CUDA_ATTN_BYTES (the bf16 halves of matmul_backward may take
// twice the scratch budget). Files: cuda_context.cu (devices, checks, GEMM wrappers), cuda_ops.cu
// (forward table), cuda_quant.cu (dequantization, activation rounding), cuda_attention.cu,
// cuda_backward.cu, cuda_eval.cu (per-token eval statistics); tests in
// tests/cuda/test_cuda_ops.cpp.
#pragma once
#include <string>

#include "backend/ops.h"
#include "backend/ops_backward.h"

namespace samq {

// Number of usable CUDA devices (0 when there is no driver or GPU; never throws).
int cuda_device_count();
// The tables of device `index` (made on first use; throws samq::Error naming the device when
// it cannot be opened).
const Ops& cuda_ops(int index = 0);
const BackwardOps& cuda_backward_ops(int index = 0);

}  // namespace samq
