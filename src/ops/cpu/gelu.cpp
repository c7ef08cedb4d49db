// CPU GELU (tanh approximation), written through the sigmoid identity
//   0.5 x (1 + tanh(u)) = x * sigmoid(2u),  u = sqrt(2/pi) (x + 0.044715 x^3),
// so that one exp and one reciprocal do the work. Backward:
//   d/dx = s + 2 x s (1 - s) u',  s = sigmoid(2u),  u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
// OpenMP splits the array into one contiguous span per thread; each span runs
// the AVX-512 kernels (kernels_avx512.cpp) where the CPU has them, else AVX2.
#include <cmath>

#include "ops/backends.h"
#include "ops/cpu/isa.h"
#include "ops/cpu/parallel.h"
#include "ops/cpu/vec_math.h"

namespace dtrain::cpu {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCoeff = 0.044715f;

#ifdef DTRAIN_CPU_AVX2
// sigmoid(2u) for a vector of x, with -2u = x (a + b x^2) folded into two ops.
inline __m256 sigmoid_2u(__m256 x) {
  const __m256 a = _mm256_set1_ps(-2.0f * kSqrt2OverPi), b = _mm256_set1_ps(-2.0f * kSqrt2OverPi * kCoeff);
  const __m256 minus_2u = _mm256_mul_ps(x, _mm256_fmadd_ps(b, _mm256_mul_ps(x, x), a));
  return reciprocal8(_mm256_add_ps(_mm256_set1_ps(1.0f), exp8(minus_2u)));
}

void gelu_span(const float* x, float* out, int64_t n) {
  for_each_lane_block(n, [&](int64_t i, int64_t count) {
    const __m256 xv = load8(x + i, count);
    store8(out + i, _mm256_mul_ps(xv, sigmoid_2u(xv)), count);
  });
}

void gelu_backward_span(const float* x, const float* dout, float* dx, int64_t n) {
  for_each_lane_block(n, [&](int64_t i, int64_t count) {
    const __m256 xv = load8(x + i, count);
    const __m256 s = sigmoid_2u(xv);
    const __m256 du =
        _mm256_mul_ps(_mm256_set1_ps(kSqrt2OverPi),
                      _mm256_fmadd_ps(_mm256_set1_ps(3.0f * kCoeff), _mm256_mul_ps(xv, xv), _mm256_set1_ps(1.0f)));
    // s + 2 x s (1 - s) u'
    const __m256 two_x_s = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(2.0f), xv), s);
    const __m256 local = _mm256_fmadd_ps(_mm256_mul_ps(two_x_s, _mm256_sub_ps(_mm256_set1_ps(1.0f), s)), du, s);
    store8(dx + i, _mm256_fmadd_ps(local, load8(dout + i, count), load8(dx + i, count)), count);
  });
}
#else
inline float sigmoid_2u(float x) {
  const float u = kSqrt2OverPi * x * (1.0f + kCoeff * x * x);
  return 1.0f / (1.0f + std::exp(-2.0f * u));
}

void gelu_span(const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * sigmoid_2u(x[i]);
}

void gelu_backward_span(const float* x, const float* dout, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = sigmoid_2u(x[i]);
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kCoeff * x[i] * x[i]);
    dx[i] += (s + 2.0f * x[i] * s * (1.0f - s) * du) * dout[i];
  }
}
#endif

}  // namespace

void gelu(Tensor& out, const Tensor& x) {
  const int64_t n = x.numel();
  const float* px = x.data<float>();
  float* po = out.data<float>();
  const bool use_avx512 = active_isa() == Isa::avx512;
#pragma omp parallel if (n > kParallelGrain)
  {
    int64_t i0, i1;
    thread_range(n, i0, i1);
    if (use_avx512) {
      avx512::gelu(px + i0, po + i0, i1 - i0);
    } else {
      gelu_span(px + i0, po + i0, i1 - i0);
    }
  }
}

void gelu_backward(Tensor& dx, const Tensor& dout, const Tensor& x) {
  const int64_t n = x.numel();
  const float* px = x.data<float>();
  const float* pd = dout.data<float>();
  float* pdx = dx.data<float>();
  const bool use_avx512 = active_isa() == Isa::avx512;
#pragma omp parallel if (n > kParallelGrain)
  {
    int64_t i0, i1;
    thread_range(n, i0, i1);
    if (use_avx512) {
      avx512::gelu_backward(px + i0, pd + i0, pdx + i0, i1 - i0);
    } else {
      gelu_backward_span(px + i0, pd + i0, pdx + i0, i1 - i0);
    }
  }
}

}  // namespace dtrain::cpu
