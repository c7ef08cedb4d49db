// Proves the CUDA build wiring (nvcc, architectures, shared cudart) and gives
// tests one kernel to launch: fills a device buffer with a value.
#include "core/cuda_check.h"

namespace dtrain::cuda {
namespace {
__global__ void fill_f32_kernel(float* out, float value, long n) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = value;
}
}  // namespace

void probe_fill_f32(float* out, float value, long n) {
  if (n <= 0) return;
  const int threads = 256;
  const long blocks = (n + threads - 1) / threads;
  fill_f32_kernel<<<static_cast<unsigned>(blocks), threads>>>(out, value, n);
  DTRAIN_CUDA_CHECK(cudaGetLastError());
  DTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
}
}  // namespace dtrain::cuda
