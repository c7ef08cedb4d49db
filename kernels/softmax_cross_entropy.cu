// Fused softmax cross-entropy: one block per row reads the logits three times
// (max, sum of exponentials, then the gradient), all in f32, and writes the
// loss and (optionally) dlogits = (softmax - onehot) * grad_scale.
#include "common.cuh"

namespace dtrain::cuda {
namespace {

constexpr int kThreads = 512;

template <typename T>
__global__ void softmax_cross_entropy_kernel(float* losses, T* dlogits, const T* logits, const int32_t* targets,
                                             int64_t V, float grad_scale, int32_t ignore_index) {
  __shared__ float shared[32];
  const int64_t row = blockIdx.x;
  const T* x = logits + row * V;
  T* dx = dlogits != nullptr ? dlogits + row * V : nullptr;
  const int32_t target = targets[row];
  if (target == ignore_index) {
    if (threadIdx.x == 0) losses[row] = 0.0f;
    if (dx != nullptr) {
      for (int64_t j = threadIdx.x; j < V; j += blockDim.x) dx[j] = store<T>(0.0f);
    }
    return;
  }
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, load(x[j]));
  m = block_max(m, shared);
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) s += expf(load(x[j]) - m);
  s = block_sum(s, shared);
  const float lse = m + logf(s);
  const bool valid = target >= 0 && target < V;  // validated by the op; NaN marks a bypass
  if (threadIdx.x == 0) losses[row] = valid ? lse - load(x[target]) : NAN;
  if (dx != nullptr) {
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      const float p = expf(load(x[j]) - lse);
      dx[j] = store<T>(valid ? (p - (j == target ? 1.0f : 0.0f)) * grad_scale : NAN);
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
  dispatch_float(logits.dtype(), "softmax_cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    softmax_cross_entropy_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, ctx.stream()>>>(
        ptr<float>(losses), dlogits.defined() ? ptr<T>(dlogits) : nullptr, ptr<T>(logits), ptr<int32_t>(targets), V,
        grad_scale, ignore_index);
    DTRAIN_LAUNCH_CHECK();
  });
}

}  // namespace dtrain::cuda
