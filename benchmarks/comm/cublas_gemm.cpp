// cuBLAS GEMM in bf16, TF32 and f32: the hardware figure the kernels suite
// compares with the datasheet. Called directly (not through ops::matmul) so
// that TF32 can be measured beside true f32 in one process; ops::matmul's
// own figure is measured next to it by the kernels suite.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <memory>

#include "bench_suite.h"
#include "dtrain/error.h"
#include "machine_baselines.h"

namespace dtrain::bench {

double cublas_gemm_tflops(int device_index, const std::string& kind, int n, double seconds) {
  DTRAIN_CHECK(kind == "bf16" || kind == "tf32" || kind == "f32", "unknown GEMM kind '", kind, "' (bf16, tf32, f32)");
  DTRAIN_CHECK(cudaSetDevice(device_index) == cudaSuccess, "cannot select cuda:", device_index);
  const bool bf16 = kind == "bf16";
  const size_t elem = bf16 ? 2 : 4;
  const size_t bytes = static_cast<size_t>(n) * n * elem;
  void* buffers[3] = {nullptr, nullptr, nullptr};
  for (auto& p : buffers) {
    DTRAIN_CHECK(cudaMalloc(&p, bytes) == cudaSuccess, "cudaMalloc of ", bytes, " bytes for the GEMM failed");
    cudaMemset(p, 0, bytes);  // zeros: the figure does not depend on values
  }
  auto free_all = [&] {
    for (void* p : buffers) cudaFree(p);
  };
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    free_all();
    DTRAIN_THROW("cublasCreate failed on cuda:", device_index);
  }
  const cudaDataType type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t compute = kind == "tf32" ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const float alpha = 1.0f, beta = 0.0f;
  auto gemm = [&] {
    const cublasStatus_t s =
        cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, buffers[0], type, n, buffers[1], type, n, &beta,
                     buffers[2], type, n, compute, CUBLAS_GEMM_DEFAULT);
    DTRAIN_CHECK(s == CUBLAS_STATUS_SUCCESS, "cublasGemmEx (", kind, ", n=", n, ") failed with status ",
                 static_cast<int>(s));
  };
  double best = 0;
  try {
    gemm();
    cudaDeviceSynchronize();
    // Ten GEMMs per timed call keep launch gaps out of the figure.
    const TimedCalls t = time_calls(
        [&] {
          for (int i = 0; i < 10; ++i) gemm();
          DTRAIN_CHECK(cudaDeviceSynchronize() == cudaSuccess, "the GEMM failed on cuda:", device_index);
        },
        20, seconds);
    best = 10 * 2.0 * n * static_cast<double>(n) * n / t.best() / 1e12;
  } catch (...) {
    cublasDestroy(handle);
    free_all();
    throw;
  }
  cublasDestroy(handle);
  free_all();
  return best;
}

}  // namespace dtrain::bench
