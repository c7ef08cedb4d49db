// Fused softmax cross-entropy: one block per row reads the logits three times
// (max, sum of exponentials, then the gradient; the second and third reads
// mostly hit L2), all in f32, and writes the loss and (optionally)
// dlogits = (softmax - onehot) * grad_scale. Threads take VEC = 8 consecutive
// logits per step (16-byte accesses for bf16) when V is a multiple of 8 and
// the pointers are 16-byte aligned, else one.
#include "common.cuh"

namespace dtrain::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kVec = 8;

template <typename T, int VEC>
__global__ void softmax_cross_entropy_kernel(float* losses, T* dlogits, const T* logits, const int32_t* targets,
                                             int64_t V, float grad_scale, int32_t ignore_index) {
  __shared__ float shared[32];
  const int64_t row = blockIdx.x;
  const T* x = logits + row * V;
  T* dx = dlogits != nullptr ? dlogits + row * V : nullptr;
  const int32_t target = targets[row];
  const int64_t step = static_cast<int64_t>(blockDim.x) * VEC;
  const int64_t first = static_cast<int64_t>(threadIdx.x) * VEC;
  if (target == ignore_index) {  // uniform across the block
    if (threadIdx.x == 0) losses[row] = 0.0f;
    if (dx != nullptr) {
      float zero[VEC];
#pragma unroll
      for (int k = 0; k < VEC; ++k) zero[k] = 0.0f;
      for (int64_t j = first; j < V; j += step) store_vec<T, VEC>(dx + j, zero);
    }
    return;
  }
  float m = -INFINITY;
  for (int64_t j = first; j < V; j += step) {
    float v[VEC];
    load_vec<T, VEC>(x + j, v);
#pragma unroll
    for (int k = 0; k < VEC; ++k) m = fmaxf(m, v[k]);
  }
  m = block_max(m, shared);
  float s = 0.0f;
  for (int64_t j = first; j < V; j += step) {
    float v[VEC];
    load_vec<T, VEC>(x + j, v);
#pragma unroll
    for (int k = 0; k < VEC; ++k) s += expf(v[k] - m);
  }
  s = block_sum(s, shared);
  const float lse = m + logf(s);
  const bool valid = target >= 0 && target < V;  // validated by the op; NaN marks a bypass
  if (threadIdx.x == 0) losses[row] = valid ? lse - load(x[target]) : NAN;
  if (dx != nullptr) {
    for (int64_t j = first; j < V; j += step) {
      float v[VEC];
      load_vec<T, VEC>(x + j, v);
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const float p = expf(v[k] - lse);
        v[k] = valid ? (p - (j + k == target ? 1.0f : 0.0f)) * grad_scale : NAN;
      }
      store_vec<T, VEC>(dx + j, v);
    }
  }
}

}  // namespace

void softmax_cross_entropy(Tensor& losses, Tensor& dlogits, const Tensor& logits, const Tensor& targets,
                           float grad_scale, int32_t ignore_index) {
  const OpContext ctx(logits);
  require_same_dtype("softmax_cross_entropy", logits.dtype(), {&dlogits});
  const int64_t V = logits.size(-1), rows = rows_of(logits);
  if (rows == 0) return;
  const bool vec =
      V % kVec == 0 && aligned16(logits.data_ptr()) && (!dlogits.defined() || aligned16(dlogits.data_ptr()));
  dispatch_float(logits.dtype(), "softmax_cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    T* dl = dlogits.defined() ? ptr<T>(dlogits) : nullptr;
    if (vec) {
      softmax_cross_entropy_kernel<T, kVec><<<static_cast<unsigned>(rows), kThreads, 0, ctx.stream()>>>(
          ptr<float>(losses), dl, ptr<T>(logits), ptr<int32_t>(targets), V, grad_scale, ignore_index);
    } else {
      softmax_cross_entropy_kernel<T, 1><<<static_cast<unsigned>(rows), kThreads, 0, ctx.stream()>>>(
          ptr<float>(losses), dl, ptr<T>(logits), ptr<int32_t>(targets), V, grad_scale, ignore_index);
    }
    DTRAIN_LAUNCH_CHECK();
  });
}

}  // namespace dtrain::cuda
