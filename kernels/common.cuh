// Shared helpers for the CUDA backend (namespace dtrain::cuda): element
// types, dtype dispatch, launch checking, the current stream, reductions.
//
// Conventions for every kernel file:
//  - Inputs were validated by src/ops/<op>.cpp; kernels trust shapes.
//  - Math is f32 whatever the storage type (f32, bf16, f16): load() widens,
//    store() rounds to nearest even.
//  - Each op runs on the current stream of its tensors' device
//    (dtrain/stream.h) with that device set for the call (OpContext).
//  - Every launch is followed by DTRAIN_LAUNCH_CHECK().
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda_caching_allocator.h"
#include "core/cuda_check.h"
#include "dtrain/stream.h"
#include "dtrain/tensor.h"

// Checks the launch just made (bad configuration, missing kernel image).
#define DTRAIN_LAUNCH_CHECK() DTRAIN_CUDA_CHECK(cudaGetLastError())

namespace dtrain::cuda {

// ---- element conversions --------------------------------------------------
__device__ __forceinline__ float load(float v) {
  return v;
}
__device__ __forceinline__ float load(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
__device__ __forceinline__ float load(__half v) {
  return __half2float(v);
}

template <typename T>
__device__ __forceinline__ T store(float v);
template <>
__device__ __forceinline__ float store<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half store<__half>(float v) {
  return __float2half_rn(v);
}

// ---- vector access ---------------------------------------------------------
// VEC consecutive elements as f32, through 16-byte accesses when VEC elements
// fill whole 16-byte words (the pointer must then be 16-byte aligned).
template <typename T, int VEC>
__device__ __forceinline__ void load_vec(const T* p, float (&v)[VEC]) {
  if constexpr ((sizeof(T) * VEC) % 16 == 0) {
    alignas(16) T tmp[VEC];
#pragma unroll
    for (int i = 0; i < static_cast<int>(sizeof(T) * VEC / 16); ++i) {
      reinterpret_cast<uint4*>(tmp)[i] = reinterpret_cast<const uint4*>(p)[i];
    }
#pragma unroll
    for (int i = 0; i < VEC; ++i) v[i] = load(tmp[i]);
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) v[i] = load(p[i]);
  }
}

template <typename T, int VEC>
__device__ __forceinline__ void store_vec(T* p, const float (&v)[VEC]) {
  if constexpr ((sizeof(T) * VEC) % 16 == 0) {
    alignas(16) T tmp[VEC];
#pragma unroll
    for (int i = 0; i < VEC; ++i) tmp[i] = store<T>(v[i]);
#pragma unroll
    for (int i = 0; i < static_cast<int>(sizeof(T) * VEC / 16); ++i) {
      reinterpret_cast<uint4*>(p)[i] = reinterpret_cast<const uint4*>(tmp)[i];
    }
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) p[i] = store<T>(v[i]);
  }
}

inline bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// ---- dtype dispatch -------------------------------------------------------
// DTRAIN_DISPATCH_FLOAT(dtype, "op", [&](auto tag) { using T = decltype(tag); ... });
template <typename F>
void dispatch_float(DType dtype, const char* op, F&& body) {
  switch (dtype) {
    case DType::f32:
      body(float{});
      return;
    case DType::bf16:
      body(__nv_bfloat16{});
      return;
    case DType::f16:
      body(__half{});
      return;
    default:
      break;
  }
  DTRAIN_THROW("cuda::", op, ": dtype ", dtype_name(dtype), " is not supported on CUDA (f32, bf16, f16 are)");
}

template <typename T>
inline T* ptr(const Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

// Throws unless every defined tensor in the list has `dtype` (kernels that
// take one element type for several tensors call this first).
inline void require_same_dtype(const char* op, DType dtype, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (t != nullptr && t->defined()) {
      DTRAIN_CHECK(t->dtype() == dtype, "cuda::", op, ": all activations and weights must share one dtype; got ",
                   dtype_name(dtype), " and ", t->describe(), "; cast first (ops::cast)");
    }
  }
}

// ---- per-op context -------------------------------------------------------
// Sets the tensors' device for the call and fetches its current stream.
class OpContext {
 public:
  explicit OpContext(const Tensor& any)
      : device_(any.device()),
        guard_(device_.index()),
        stream_(static_cast<cudaStream_t>(current_stream(device_).native_handle())) {}
  cudaStream_t stream() const { return stream_; }
  const Device& device() const { return device_; }
  // Scratch memory from the caching allocator, freed stream-ordered when the handle goes.
  Tensor scratch(const Shape& shape, DType dtype = DType::f32) const { return Tensor::empty(shape, dtype, device_); }

 private:
  Device device_;
  CudaDeviceGuard guard_;
  cudaStream_t stream_;
};

inline unsigned blocks_for(int64_t n, int threads, int64_t max_blocks = 65535LL * 16) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > max_blocks) b = max_blocks;
  return static_cast<unsigned>(b);
}

// ---- reductions -----------------------------------------------------------
__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread
// gets the result. `shared` holds 32 floats.
__device__ __forceinline__ float block_sum(float v, float* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // shared may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : 0.0f;
  return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : -INFINITY;
  return warp_max(v);
}

// Rows of a tensor whose last dimension is the row length.
inline int64_t rows_of(const Tensor& t) {
  const int64_t c = t.size(-1);
  return c == 0 ? 0 : t.numel() / c;
}

}  // namespace dtrain::cuda
