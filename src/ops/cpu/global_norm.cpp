// CPU sum of squares over many tensors. Blocks of kBlock elements are summed
// in f32 (four AVX2 accumulators, so the adds pipeline) and the block sums in
// double: about f32 accuracy per block, double across hundreds of millions of
// values, at memory speed.
#include "ops/backends.h"
#include "ops/cpu/parallel.h"
#include "ops/cpu/vec_math.h"

namespace dtrain::cpu {
namespace {

constexpr int64_t kBlock = 4096;

float block_sum_squares(const float* p, int64_t n) {
  int64_t i = 0;
  float total = 0.0f;
#ifdef DTRAIN_CPU_AVX2
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (; i + 4 * kLanes <= n; i += 4 * kLanes) {
    const __m256 x0 = _mm256_loadu_ps(p + i), x1 = _mm256_loadu_ps(p + i + 8);
    const __m256 x2 = _mm256_loadu_ps(p + i + 16), x3 = _mm256_loadu_ps(p + i + 24);
    a0 = _mm256_fmadd_ps(x0, x0, a0);
    a1 = _mm256_fmadd_ps(x1, x1, a1);
    a2 = _mm256_fmadd_ps(x2, x2, a2);
    a3 = _mm256_fmadd_ps(x3, x3, a3);
  }
  total = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#endif
  for (; i < n; ++i) total += p[i] * p[i];
  return total;
}

double sum_squares(const float* p, int64_t n) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  double sum = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : sum) if (n > kParallelGrain)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t b0 = b * kBlock;
    sum += block_sum_squares(p + b0, b0 + kBlock < n ? kBlock : n - b0);
  }
  return sum;
}

double sum_squares_bf16(const uint16_t* p, int64_t n) {
  double sum = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : sum) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const double x = bf16_to_float(p[i]);
    sum += x * x;
  }
  return sum;
}

}  // namespace

void global_norm_squared(Tensor& out, const std::vector<Tensor>& tensors) {
  double total = 0.0;
  for (const Tensor& t : tensors) {
    if (t.dtype() == DType::f32) {
      total += sum_squares(t.data<float>(), t.numel());
    } else {
      total += sum_squares_bf16(static_cast<const uint16_t*>(t.data_ptr()), t.numel());
    }
  }
  out.data<float>()[0] = static_cast<float>(total);
}

}  // namespace dtrain::cpu
