// CPU softmax cross-entropy fused with its gradient: per row, one pass for
// the max, one for sum(exp), one writing dlogits. Rows are independent, so
// dlogits may be logits itself (each row is fully read before it is written).
#include <cmath>

#include "ops/backends.h"
#include "ops/cpu/parallel.h"

namespace dtrain::cpu {

void softmax_cross_entropy(Tensor& losses, Tensor& dlogits, const Tensor& logits, const Tensor& targets,
                           float grad_scale, int32_t ignore_index) {
  const int64_t n = logits.size(0), v = logits.size(1);
  const float* px = logits.data<float>();
  const int32_t* pt = targets.data<int32_t>();
  float* pl = losses.data<float>();
  float* pd = dlogits.defined() ? dlogits.data<float>() : nullptr;
#pragma omp parallel for schedule(static) if (n * v > kParallelGrain)
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = px + r * v;
    const int32_t target = pt[r];
    if (target == ignore_index) {
      pl[r] = 0.0f;
      if (pd != nullptr) {
        float* dr = pd + r * v;
        for (int64_t i = 0; i < v; ++i) dr[i] = 0.0f;
      }
      continue;
    }
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t i = 0; i < v; ++i) mx = xr[i] > mx ? xr[i] : mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < v; ++i) sum += std::exp(xr[i] - mx);
    const float log_sum = std::log(sum);
    pl[r] = log_sum + mx - xr[target];
    if (pd != nullptr) {
      float* dr = pd + r * v;
      const float inv = grad_scale / sum;
#pragma omp simd
      for (int64_t i = 0; i < v; ++i) dr[i] = std::exp(xr[i] - mx) * inv;
      dr[target] -= grad_scale;
    }
  }
}

}  // namespace dtrain::cpu
