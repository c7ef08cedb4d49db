// CPU AdamW over a list of tensors: one fused elementwise pass per tensor
// (grad read once, state read and written once, param_copy written once).
//   g = grad * grad_scale
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   p -= lr * (m / (1 - beta1^step) / (sqrt(v / (1 - beta2^step)) + eps) + wd * p)
// Each thread walks its range in blocks of kBlock elements: the f32 update
// (AVX2 when available), then, while the block is still in L1, the bf16 grad
// widening before it and the bf16 param_copy rounding after it.
// Vector and scalar paths use the same operations (mul, add, correctly
// rounded div and sqrt, no FMA), so results do not depend on the path.
#include <cmath>

#include "ops/backends.h"
#include "ops/cpu/parallel.h"
#include "ops/cpu/vec_math.h"

namespace dtrain::cpu {
namespace {

constexpr int64_t kBlock = 512;

struct Coeffs {
  float b1, one_minus_b1, b2, one_minus_b2, lr, eps, gs, bc1, bc2, wd;
};

void update_block(float* p, const float* g, float* m, float* v, int64_t n, const Coeffs& c) {
  int64_t i = 0;
#ifdef DTRAIN_CPU_AVX2
  const __m256 b1 = _mm256_set1_ps(c.b1), omb1 = _mm256_set1_ps(c.one_minus_b1), b2 = _mm256_set1_ps(c.b2),
               omb2 = _mm256_set1_ps(c.one_minus_b2), lr = _mm256_set1_ps(c.lr), eps = _mm256_set1_ps(c.eps),
               gs = _mm256_set1_ps(c.gs), bc1 = _mm256_set1_ps(c.bc1), bc2 = _mm256_set1_ps(c.bc2),
               wd = _mm256_set1_ps(c.wd);
  for (; i + kLanes <= n; i += kLanes) {
    const __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), gs);
    const __m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(omb1, gi));
    const __m256 vi =
        _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(_mm256_mul_ps(omb2, gi), gi));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    const __m256 pi = _mm256_loadu_ps(p + i);
    const __m256 step =
        _mm256_add_ps(_mm256_div_ps(_mm256_div_ps(mi, bc1), _mm256_add_ps(_mm256_sqrt_ps(_mm256_div_ps(vi, bc2)), eps)),
                      _mm256_mul_ps(wd, pi));
    _mm256_storeu_ps(p + i, _mm256_sub_ps(pi, _mm256_mul_ps(lr, step)));
  }
#endif
  for (; i < n; ++i) {
    const float gi = g[i] * c.gs;
    const float mi = c.b1 * m[i] + c.one_minus_b1 * gi;
    const float vi = c.b2 * v[i] + c.one_minus_b2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] - c.lr * ((mi / c.bc1) / (std::sqrt(vi / c.bc2) + c.eps) + c.wd * p[i]);
  }
}

void adamw_tensor(ops::AdamWTensor& t, const Coeffs& c) {
  const int64_t n = t.param.numel();
  float* p = t.param.data<float>();
  float* m = t.exp_avg.data<float>();
  float* v = t.exp_avg_sq.data<float>();
  const bool grad_f32 = t.grad.dtype() == DType::f32;
  const void* g = t.grad.data_ptr();
  auto* copy = t.param_copy.defined() ? static_cast<uint16_t*>(t.param_copy.data_ptr()) : nullptr;
#pragma omp parallel if (n > kParallelGrain)
  {
    int64_t i0, i1;
    thread_range(n, i0, i1);
    alignas(64) float gbuf[kBlock];
    for (int64_t b0 = i0; b0 < i1; b0 += kBlock) {
      const int64_t len = b0 + kBlock < i1 ? kBlock : i1 - b0;
      const float* gb = static_cast<const float*>(g) + b0;
      if (!grad_f32) {
        const uint16_t* g16 = static_cast<const uint16_t*>(g) + b0;
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) gbuf[j] = bf16_to_float(g16[j]);
        gb = gbuf;
      }
      update_block(p + b0, gb, m + b0, v + b0, len, c);
      if (copy != nullptr) {
        uint16_t* cb = copy + b0;
        const float* pb = p + b0;
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) cb[j] = float_to_bf16(pb[j]);
      }
    }
  }
}

}  // namespace

void adamw_step(std::vector<ops::AdamWTensor>& tensors, const ops::AdamWConfig& config) {
  Coeffs c{};
  c.b1 = config.beta1;
  c.one_minus_b1 = 1.0f - config.beta1;
  c.b2 = config.beta2;
  c.one_minus_b2 = 1.0f - config.beta2;
  c.lr = config.lr;
  c.eps = config.eps;
  c.gs = config.grad_scale;
  // On the CPU the "device" scale is host memory: read in place.
  if (config.device_grad_scale.defined()) c.gs = config.grad_scale * config.device_grad_scale.data<float>()[0];
  c.bc1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(config.beta1), static_cast<double>(config.step)));
  c.bc2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(config.beta2), static_cast<double>(config.step)));
  for (ops::AdamWTensor& t : tensors) {
    c.wd = t.weight_decay;
    adamw_tensor(t, c);
  }
}

}  // namespace dtrain::cpu
