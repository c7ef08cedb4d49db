// CPU AdamW over a list of tensors: one fused elementwise pass per tensor
// (grad read once, state read and written once, param_copy written once).
//   g = grad * grad_scale
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   p -= lr * (m / (1 - beta1^step) / (sqrt(v / (1 - beta2^step)) + eps) + wd * p)
#include <cmath>

#include "ops/backends.h"
#include "ops/cpu/parallel.h"

namespace dtrain::cpu {
namespace {

template <typename G>
void adamw_tensor(float* p, const G* g, float* m, float* v, uint16_t* copy, int64_t n, const ops::AdamWConfig& cfg,
                  float weight_decay, float bc1, float bc2) {
  const float b1 = cfg.beta1, b2 = cfg.beta2, lr = cfg.lr, eps = cfg.eps, gs = cfg.grad_scale;
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    float gi;
    if constexpr (std::is_same_v<G, float>) {
      gi = g[i] * gs;
    } else {
      gi = bf16_to_float(g[i]) * gs;
    }
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float pi = p[i] - lr * ((mi / bc1) / (std::sqrt(vi / bc2) + eps) + weight_decay * p[i]);
    p[i] = pi;
    if (copy != nullptr) copy[i] = float_to_bf16(pi);
  }
}

}  // namespace

void adamw_step(std::vector<ops::AdamWTensor>& tensors, const ops::AdamWConfig& config) {
  const float bc1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(config.beta1), static_cast<double>(config.step)));
  const float bc2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(config.beta2), static_cast<double>(config.step)));
  for (ops::AdamWTensor& t : tensors) {
    const int64_t n = t.param.numel();
    auto* copy = t.param_copy.defined() ? static_cast<uint16_t*>(t.param_copy.data_ptr()) : nullptr;
    if (t.grad.dtype() == DType::f32) {
      adamw_tensor(t.param.data<float>(), t.grad.data<float>(), t.exp_avg.data<float>(), t.exp_avg_sq.data<float>(),
                   copy, n, config, t.weight_decay, bc1, bc2);
    } else {
      adamw_tensor(t.param.data<float>(), static_cast<const uint16_t*>(t.grad.data_ptr()), t.exp_avg.data<float>(),
                   t.exp_avg_sq.data<float>(), copy, n, config, t.weight_decay, bc1, bc2);
    }
  }
}

}  // namespace dtrain::cpu
