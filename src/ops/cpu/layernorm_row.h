// Internal: the CPU layernorm of one row, shared by layernorm and
// add_layernorm so that the fused op normalises exactly as the plain one does
// (same loops, same rounding: bitwise equal results on the same row).
#pragma once

#include <cmath>
#include <cstdint>

namespace dtrain::cpu {

// out = (x - mean) * rstd * weight + bias (bias may be null) over ch values;
// the mean and rstd used are returned. Two-pass variance, for accuracy.
inline void layernorm_row(const float* xr, float* orow, const float* pw, const float* pb, int64_t ch, float eps,
                          float& mean, float& rstd) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < ch; ++i) sum += xr[i];
  const float m = ch > 0 ? sum / static_cast<float>(ch) : 0.0f;
  float var = 0.0f;
#pragma omp simd reduction(+ : var)
  for (int64_t i = 0; i < ch; ++i) var += (xr[i] - m) * (xr[i] - m);
  const float s = 1.0f / std::sqrt((ch > 0 ? var / static_cast<float>(ch) : 0.0f) + eps);
  if (pb != nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < ch; ++i) orow[i] = (xr[i] - m) * s * pw[i] + pb[i];
  } else {
#pragma omp simd
    for (int64_t i = 0; i < ch; ++i) orow[i] = (xr[i] - m) * s * pw[i];
  }
  mean = m;
  rstd = s;
}

}  // namespace dtrain::cpu
