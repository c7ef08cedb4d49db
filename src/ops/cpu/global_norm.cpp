// CPU sum of squares over many tensors, accumulated in double so that a
// norm over hundreds of millions of values keeps f32 accuracy.
#include "ops/backends.h"
#include "ops/cpu/parallel.h"

namespace dtrain::cpu {

void global_norm_squared(Tensor& out, const std::vector<Tensor>& tensors) {
  double total = 0.0;
  for (const Tensor& t : tensors) {
    const int64_t n = t.numel();
    double sum = 0.0;
    if (t.dtype() == DType::f32) {
      const float* p = t.data<float>();
#pragma omp parallel for simd schedule(static) reduction(+ : sum) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(p[i]) * p[i];
    } else {
      const auto* p = static_cast<const uint16_t*>(t.data_ptr());
#pragma omp parallel for simd schedule(static) reduction(+ : sum) if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) {
        const double x = bf16_to_float(p[i]);
        sum += x * x;
      }
    }
    total += sum;
  }
  out.data<float>()[0] = static_cast<float>(total);
}

}  // namespace dtrain::cpu
