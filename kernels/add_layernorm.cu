// add_layernorm on CUDA: residual = a + b, out = layernorm(residual), one
// warp per row in one launch (the residual stream is read once from DRAM
// instead of written by add and read back by layernorm).
//
// Modelled on the layernorm forward kernel (kernels/layernorm.cu): each lane
// takes VEC = 8 consecutive elements per step (16-byte loads for bf16/f16,
// two for f32) when C is a multiple of 8 and every pointer is 16-byte
// aligned, else one. The first pass adds, rounds the sum to T, stores it as
// the residual and sums the ROUNDED values, in the same order as layernorm's
// mean pass; the rest is layernorm_finish_row (layernorm_row.cuh), the very
// code layernorm runs, reading back the residual this lane just wrote (L1/L2).
// So the result equals add then layernorm bit for bit, and backward can use
// layernorm_backward on the stored residual. Statistics are f32.
// residual may be exactly a or b: each lane reads its elements before it
// writes them, and nothing else reads them.
#include "common.cuh"
#include "layernorm_row.cuh"

namespace dtrain::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kVec = 8;

template <typename T, int VEC>
__global__ void add_layernorm_kernel(T* residual, T* out, float* mean_out, float* rstd_out, const T* a, const T* b,
                                     const T* weight, const T* bias, int64_t rows, int64_t C, float eps) {
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / 32;
  if (row >= rows) return;
  const T* ar = a + row * C;
  const T* br = b + row * C;
  T* res = residual + row * C;
  float sum = 0.0f;
  for (int64_t c = lane * VEC; c < C; c += 32 * VEC) {
    float va[VEC], vb[VEC];
    load_vec<T, VEC>(ar + c, va);
    load_vec<T, VEC>(br + c, vb);
#pragma unroll
    for (int k = 0; k < VEC; ++k) va[k] = load(store<T>(va[k] + vb[k]));  // the value stored below
    store_vec<T, VEC>(res + c, va);
#pragma unroll
    for (int k = 0; k < VEC; ++k) sum += va[k];
  }
  const float mean = warp_sum(sum) / static_cast<float>(C);
  layernorm_finish_row<T, VEC>(out + row * C, mean_out + row, rstd_out + row, res, weight, bias, C, eps, mean, lane);
}

template <typename T, int VEC>
void launch(const OpContext& ctx, Tensor& residual, Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& a,
            const Tensor& b, const Tensor& weight, const Tensor& bias, int64_t rows, int64_t C, float eps) {
  const unsigned blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  add_layernorm_kernel<T, VEC><<<blocks, kWarpsPerBlock * 32, 0, ctx.stream()>>>(
      ptr<T>(residual), ptr<T>(out), ptr<float>(mean), ptr<float>(rstd), ptr<T>(a), ptr<T>(b), ptr<T>(weight),
      bias.defined() ? ptr<T>(bias) : nullptr, rows, C, eps);
  DTRAIN_LAUNCH_CHECK();
}

}  // namespace

void add_layernorm(Tensor& residual, Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& a, const Tensor& b,
                   const Tensor& weight, const Tensor& bias, float eps) {
  const OpContext ctx(out);
  require_same_dtype("add_layernorm", a.dtype(), {&b, &residual, &out, &weight, &bias});
  const int64_t C = a.size(-1), rows = rows_of(a);
  if (rows == 0) return;
  const bool vec = rows_vectorizable(C, kVec, {&residual, &out, &a, &b, &weight, &bias});
  dispatch_float(a.dtype(), "add_layernorm", [&](auto tag) {
    using T = decltype(tag);
    if (vec) {
      launch<T, kVec>(ctx, residual, out, mean, rstd, a, b, weight, bias, rows, C, eps);
    } else {
      launch<T, 1>(ctx, residual, out, mean, rstd, a, b, weight, bias, rows, C, eps);
    }
  });
}

}  // namespace dtrain::cuda
