// CPU softmax cross-entropy fused with its gradient. Per row: one pass for the
// max, one computing e_i = exp(x_i - max) into dlogits while summing them, one
// scaling the row (still in L2) by grad_scale / sum. Rows are independent and
// each element is read before it is written, so dlogits may be logits itself.
// The exp is exp8 (AVX2) or its AVX-512 twin (about 2 ulp), which keeps the op
// memory-bound.
#include <cmath>

#include "ops/backends.h"
#include "ops/cpu/isa.h"
#include "ops/cpu/parallel.h"
#include "ops/cpu/vec_math.h"

namespace dtrain::cpu {
namespace {

// Writes exp(x_i - mx) to out (when not null) and returns the sum.
float exp_shifted(const float* x, float* out, int64_t v, float mx, bool use_avx512) {
  if (use_avx512) return avx512::exp_shifted_sum(x, out, v, mx);
#ifdef DTRAIN_CPU_AVX2
  const __m256 vmx = _mm256_set1_ps(mx);
  __m256 acc = _mm256_setzero_ps();
  for_each_lane_block(v, [&](int64_t i, int64_t count) {
    // Padding with -inf gives exp = 0, so tail lanes add nothing.
    const __m256 e = exp8(_mm256_sub_ps(load8(x + i, count, -INFINITY), vmx));
    acc = _mm256_add_ps(acc, e);
    if (out != nullptr) store8(out + i, e, count);
  });
  return hsum8(acc);
#else
  float sum = 0.0f;
  for (int64_t i = 0; i < v; ++i) {
    const float e = std::exp(x[i] - mx);
    if (out != nullptr) out[i] = e;
    sum += e;
  }
  return sum;
#endif
}

}  // namespace

void softmax_cross_entropy(Tensor& losses, Tensor& dlogits, const Tensor& logits, const Tensor& targets,
                           float grad_scale, int32_t ignore_index) {
  const int64_t n = logits.size(0), v = logits.size(1);
  const float* px = logits.data<float>();
  const int32_t* pt = targets.data<int32_t>();
  float* pl = losses.data<float>();
  float* pd = dlogits.defined() ? dlogits.data<float>() : nullptr;
  const bool use_avx512 = active_isa() == Isa::avx512;
#pragma omp parallel for schedule(static) if (n * v > kParallelGrain)
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = px + r * v;
    float* dr = pd != nullptr ? pd + r * v : nullptr;
    const int32_t target = pt[r];
    if (target == ignore_index) {
      pl[r] = 0.0f;
      if (dr != nullptr) {
        for (int64_t i = 0; i < v; ++i) dr[i] = 0.0f;
      }
      continue;
    }
    const float x_target = xr[target];
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t i = 0; i < v; ++i) mx = xr[i] > mx ? xr[i] : mx;
    const float sum = exp_shifted(xr, dr, v, mx, use_avx512);
    if (dr != nullptr) {
      const float scale = grad_scale / sum;
#pragma omp simd
      for (int64_t i = 0; i < v; ++i) dr[i] *= scale;
      dr[target] -= grad_scale;
    }
    pl[r] = std::log(sum) + mx - x_target;
  }
}

}  // namespace dtrain::cpu
