// Internal: one GEMM entry point over cuBLASLt for every op that multiplies
// matrices (matmul, linear, the straightforward attention).
//
// Row-major: out[M, N] = alpha * op(a) @ op(b) (+ bias[N] broadcast over rows)
//                        + beta * out,
// op(x) = x or x^T; a is [M, K] ([K, M] when trans_a), b is [K, N] ([N, K] when
// trans_b); `batch` problems with element strides between them (stride 0
// repeats one matrix). a and b share a dtype; out is that dtype or f32.
// Accumulation and scaling are f32 (TF32 for f32 inputs only when the
// environment sets DTRAIN_ALLOW_TF32=1). Shapes cuBLASLt declines run on a
// simple CUDA-core kernel instead; DTRAIN_GEMM_FALLBACK=1 forces that kernel
// everywhere (an independent check of the cuBLASLt path).
//
// gemm_with_epilogue() adds the GELU epilogues the MLP fuses (GELU with its
// input saved, and the GELU gradient with the bias gradient). The fallback
// kernel has no epilogues, so there a declined plan returns false and the
// caller composes the unfused kernels instead.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "dtrain/dtype.h"

namespace dtrain::cuda {

// The GELU epilogues (row-major view, out [M, N]; aux [M, N] with rows of N elements).
enum class GemmEpilogue {
  none,         // out = alpha op(a) op(b) (+ bias) + beta out
  gelu_aux,     // aux = op(a) op(b) (+ bias), written; out = gelu(aux)
  dgelu_bgrad,  // out = (op(a) op(b)) * gelu'(aux); bgrad[N] = column sums of out, written
};

struct GemmArgs {
  const void* a = nullptr;
  const void* b = nullptr;
  void* out = nullptr;
  const void* bias = nullptr;  // optional, out's dtype, length n
  DType in_type = DType::f32;
  DType out_type = DType::f32;
  bool trans_a = false;
  bool trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_out = 0;  // elements between batch entries
  float alpha = 1.0f;
  float beta = 0.0f;
  GemmEpilogue epilogue = GemmEpilogue::none;
  void* aux = nullptr;    // gelu_aux: written; dgelu_bgrad: read (GELU's input); out's dtype
  void* bgrad = nullptr;  // dgelu_bgrad: optional, out's dtype, length n, written
};

// Queues the GEMM on `stream` (device `device` must be current). The
// descriptors and the heuristic's algorithm are cached per shape, dtype,
// alignment and epilogue; the workspace (32 MiB) is allocated once per stream.
void gemm(const GemmArgs& args, cudaStream_t stream, int device);

// Queues a GEMM with args.epilogue != none through cuBLASLt (batch 1, alpha 1,
// beta 0) and returns true; returns false, with nothing queued, when cuBLASLt
// has no algorithm for it (or N is not a multiple of 8, the auxiliary matrix's
// leading-dimension rule), when K == 0, or under DTRAIN_GEMM_FALLBACK=1.
bool gemm_with_epilogue(const GemmArgs& args, cudaStream_t stream, int device);

}  // namespace dtrain::cuda
