// Baselines measured in the same run, for the checks that have no datasheet:
// the CPU's FMA throughput (a loop of independent fused multiply-adds, the
// most a GEMM could reach) and memory copy bandwidth; on a GPU, GEMM through
// cuBLAS in bf16, TF32 and f32 (what the hardware gives a plain library call).
#pragma once

#include <cstddef>
#include <string>

#include "dtrain/device.h"

namespace dtrain::bench {

// GFLOP/s of an FMA-only loop on `threads` threads (AVX-512 where the CPU has
// it, else AVX2+FMA); 0 when the CPU lacks AVX2/FMA. Runs for about `seconds`.
double cpu_fma_gflops(int threads, double seconds);

// Copy bandwidth, GB/s of traffic (bytes read + bytes written, as datasheets
// count memory bandwidth), of a `bytes` buffer copied on `device`, best of
// the calls that fit in `seconds`.
double copy_gbps(const Device& device, size_t bytes, double seconds);

// cuBLAS GEMM TFLOP/s for C[n, n] = A[n, n] B[n, n] with `kind` one of "bf16",
// "tf32", "f32" on cuda:`device_index`; best of the calls that fit in
// `seconds`. Exists only when dtrain is built with CUDA (cublas_gemm.cpp).
double cublas_gemm_tflops(int device_index, const std::string& kind, int n, double seconds);

}  // namespace dtrain::bench
