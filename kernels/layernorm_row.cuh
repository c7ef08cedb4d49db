// The second half of the layernorm forward of one row, shared by the
// layernorm and add_layernorm kernels (one warp per row): given the row's
// mean, the variance pass, the normalised output and the saved statistics.
// One definition, so the fused op normalises exactly as layernorm does (same
// summation order, same rounding: add then layernorm, bit for bit).
#pragma once

#include <initializer_list>

#include "common.cuh"

namespace dtrain::cuda {

// True when rows of C elements can be read `vec` at a time with 16-byte
// accesses: C a multiple of vec, every pointer 16-byte aligned.
inline bool rows_vectorizable(int64_t C, int vec, std::initializer_list<const Tensor*> tensors) {
  if (C % vec != 0) return false;
  for (const Tensor* t : tensors) {
    if (t->defined() && !aligned16(t->data_ptr())) return false;
  }
  return true;
}

// Lane `lane` of the row's warp handles elements c = lane * VEC + k (k < VEC),
// stepping by 32 * VEC. xr is read twice more (L1/L2 hits after the mean pass).
template <typename T, int VEC>
__device__ __forceinline__ void layernorm_finish_row(T* outr, float* mean_out, float* rstd_out, const T* xr,
                                                     const T* weight, const T* bias, int64_t C, float eps, float mean,
                                                     int lane) {
  float sq = 0.0f;
  for (int64_t c = lane * VEC; c < C; c += 32 * VEC) {
    float v[VEC];
    load_vec<T, VEC>(xr + c, v);
#pragma unroll
    for (int k = 0; k < VEC; ++k) sq += (v[k] - mean) * (v[k] - mean);
  }
  const float var = warp_sum(sq) / static_cast<float>(C);  // biased, as in the CPU op
  const float rstd = rsqrtf(var + eps);
  for (int64_t c = lane * VEC; c < C; c += 32 * VEC) {
    float v[VEC], w[VEC], b[VEC];
    load_vec<T, VEC>(xr + c, v);
    load_vec<T, VEC>(weight + c, w);
    if (bias != nullptr) {
      load_vec<T, VEC>(bias + c, b);
    } else {
#pragma unroll
      for (int k = 0; k < VEC; ++k) b[k] = 0.0f;
    }
#pragma unroll
    for (int k = 0; k < VEC; ++k) v[k] = (v[k] - mean) * rstd * w[k] + b[k];
    store_vec<T, VEC>(outr + c, v);
  }
  if (lane == 0) {
    *mean_out = mean;
    *rstd_out = rstd;
  }
}

}  // namespace dtrain::cuda
