// CPU add / add_ / scale: flat loops the compiler vectorises, split across
// threads for large tensors. Exact aliasing (in place) is safe elementwise.
#include "ops/backends.h"
#include "ops/cpu/parallel.h"

namespace dtrain::cpu {

void add(Tensor& out, const Tensor& a, const Tensor& b) {
  const int64_t n = out.numel();
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) po[i] = pa[i] + pb[i];
}

void add_(Tensor& y, const Tensor& x, float alpha) {
  const int64_t n = y.numel();
  const float* px = x.data<float>();
  float* py = y.data<float>();
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) py[i] += alpha * px[i];
}

void scale(Tensor& out, const Tensor& x, float alpha) {
  const int64_t n = out.numel();
  const float* px = x.data<float>();
  float* po = out.data<float>();
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) po[i] = alpha * px[i];
}

}  // namespace dtrain::cpu
