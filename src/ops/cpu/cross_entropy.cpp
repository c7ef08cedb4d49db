// CPU softmax cross-entropy fused with its gradient: per row, one pass for
// the max, one for sum(exp), one writing dlogits. Rows are independent, so
// dlogits may be logits itself (each row is fully read before it is written).
// Eigen's array exp is vectorised (std::exp in a loop is not, without
// -ffast-math), which keeps the op memory-bound.
#include <cmath>

#include <Eigen/Core>

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
    const Eigen::Map<const Eigen::ArrayXf> row(xr, v);
    const float mx = row.maxCoeff();
    const float sum = (row - mx).exp().sum();
    pl[r] = std::log(sum) + mx - xr[target];
    if (pd != nullptr) {
      Eigen::Map<Eigen::ArrayXf> drow(pd + r * v, v);
      drow = (row - mx).exp() * (grad_scale / sum);
      pd[r * v + target] -= grad_scale;
    }
  }
}

}  // namespace dtrain::cpu
