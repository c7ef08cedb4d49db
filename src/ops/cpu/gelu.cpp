// CPU GELU (tanh approximation), written through the sigmoid identity
//   0.5 x (1 + tanh(u)) = x * sigmoid(2u),  u = sqrt(2/pi) (x + 0.044715 x^3),
// so that one exp (exp8 under AVX2) and one reciprocal do the work. Backward:
//   d/dx = s + 2 x s (1 - s) u',  s = sigmoid(2u),  u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
// OpenMP splits the array into one contiguous block per thread.
#include <cmath>

#include "ops/backends.h"
#include "ops/cpu/parallel.h"
#include "ops/cpu/vec_math.h"

namespace dtrain::cpu {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCoeff = 0.044715f;

#ifdef DTRAIN_CPU_AVX2
// sigmoid(2u) for a vector of x.
inline __m256 sigmoid_2u(__m256 x) {
  const __m256 x2 = _mm256_mul_ps(x, x);
  const __m256 u = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(kSqrt2OverPi), x),
                                 _mm256_fmadd_ps(_mm256_set1_ps(kCoeff), x2, _mm256_set1_ps(1.0f)));
  const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
  return reciprocal8(_mm256_add_ps(_mm256_set1_ps(1.0f), e));
}
#else
inline float sigmoid_2u(float x) {
  const float u = kSqrt2OverPi * x * (1.0f + kCoeff * x * x);
  return 1.0f / (1.0f + std::exp(-2.0f * u));
}
#endif

}  // namespace

void gelu(Tensor& out, const Tensor& x) {
  const int64_t n = x.numel();
  const float* px = x.data<float>();
  float* po = out.data<float>();
#pragma omp parallel if (n > kParallelGrain)
  {
    int64_t i0, i1;
    thread_range(n, i0, i1);
#ifdef DTRAIN_CPU_AVX2
    for_each_lane_block(i1 - i0, [&](int64_t i, int64_t count) {
      const __m256 xv = load8(px + i0 + i, count);
      store8(po + i0 + i, _mm256_mul_ps(xv, sigmoid_2u(xv)), count);
    });
#else
    for (int64_t i = i0; i < i1; ++i) po[i] = px[i] * sigmoid_2u(px[i]);
#endif
  }
}

void gelu_backward(Tensor& dx, const Tensor& dout, const Tensor& x) {
  const int64_t n = x.numel();
  const float* px = x.data<float>();
  const float* pd = dout.data<float>();
  float* pdx = dx.data<float>();
#pragma omp parallel if (n > kParallelGrain)
  {
    int64_t i0, i1;
    thread_range(n, i0, i1);
#ifdef DTRAIN_CPU_AVX2
    for_each_lane_block(i1 - i0, [&](int64_t i, int64_t count) {
      const int64_t at = i0 + i;
      const __m256 xv = load8(px + at, count);
      const __m256 s = sigmoid_2u(xv);
      const __m256 du = _mm256_mul_ps(_mm256_set1_ps(kSqrt2OverPi),
                                      _mm256_fmadd_ps(_mm256_set1_ps(3.0f * kCoeff), _mm256_mul_ps(xv, xv),
                                                      _mm256_set1_ps(1.0f)));
      // s + 2 x s (1 - s) u'
      const __m256 two_x_s = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(2.0f), xv), s);
      const __m256 local = _mm256_fmadd_ps(_mm256_mul_ps(two_x_s, _mm256_sub_ps(_mm256_set1_ps(1.0f), s)), du, s);
      store8(pdx + at, _mm256_fmadd_ps(local, load8(pd + at, count), load8(pdx + at, count)), count);
    });
#else
    for (int64_t i = i0; i < i1; ++i) {
      const float s = sigmoid_2u(px[i]);
      const float du = kSqrt2OverPi * (1.0f + 3.0f * kCoeff * px[i] * px[i]);
      pdx[i] += (s + 2.0f * px[i] * s * (1.0f - s) * du) * pd[i];
    }
#endif
  }
}

}  // namespace dtrain::cpu
