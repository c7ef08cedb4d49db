// layernorm forward and backward, f32 math whatever the storage type.
//
// Forward: one warp per row (rows are C = 768..8192 wide: a warp streams a
// row with coalesced loads, and needs no shared memory or block barrier).
// Backward: dx row by row (a warp each), then dweight/dbias as deterministic
// column reductions over rows (two passes, like column_sum.cuh, no atomics).
#include "common.cuh"

namespace dtrain::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

template <typename T>
__global__ void layernorm_forward_kernel(T* out, float* mean_out, float* rstd_out, const T* x, const T* weight,
                                         const T* bias, int64_t rows, int64_t C, float eps) {
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / 32;
  if (row >= rows) return;
  const T* xr = x + row * C;
  float sum = 0.0f;
  for (int64_t c = lane; c < C; c += 32) sum += load(xr[c]);
  const float mean = warp_sum(sum) / static_cast<float>(C);
  float sq = 0.0f;
  for (int64_t c = lane; c < C; c += 32) {
    const float d = load(xr[c]) - mean;
    sq += d * d;
  }
  const float var = warp_sum(sq) / static_cast<float>(C);  // biased, as in the CPU op
  const float rstd = rsqrtf(var + eps);
  T* outr = out + row * C;
  for (int64_t c = lane; c < C; c += 32) {
    const float n = (load(xr[c]) - mean) * rstd;
    outr[c] = store<T>(n * load(weight[c]) + (bias != nullptr ? load(bias[c]) : 0.0f));
  }
  if (lane == 0) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
}

// dx += rstd * (w*dout - mean(w*dout) - xhat * mean(w*dout*xhat)).
template <typename T>
__global__ void layernorm_backward_dx_kernel(T* dx, const T* dout, const T* x, const T* weight, const float* mean,
                                             const float* rstd, int64_t rows, int64_t C) {
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / 32;
  if (row >= rows) return;
  const T* xr = x + row * C;
  const T* dr = dout + row * C;
  const float m = mean[row], r = rstd[row];
  float sum_dn = 0.0f, sum_dn_xhat = 0.0f;
  for (int64_t c = lane; c < C; c += 32) {
    const float dn = load(weight[c]) * load(dr[c]);
    sum_dn += dn;
    sum_dn_xhat += dn * (load(xr[c]) - m) * r;
  }
  const float mean_dn = warp_sum(sum_dn) / static_cast<float>(C);
  const float mean_dn_xhat = warp_sum(sum_dn_xhat) / static_cast<float>(C);
  T* dxr = dx + row * C;
  for (int64_t c = lane; c < C; c += 32) {
    const float dn = load(weight[c]) * load(dr[c]);
    const float xhat = (load(xr[c]) - m) * r;
    dxr[c] = store<T>(load(dxr[c]) + r * (dn - mean_dn - xhat * mean_dn_xhat));
  }
}

// Pass 1: partial[chunk][c] sums of dout*xhat (dweight) and dout (dbias).
template <typename T>
__global__ void layernorm_backward_params_partial_kernel(float* partial_w, float* partial_b, const T* dout,
                                                         const T* x, const float* mean, const float* rstd,
                                                         int64_t rows, int64_t C, int64_t rows_per_chunk) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  const int64_t r0 = blockIdx.y * rows_per_chunk;
  const int64_t r1 = min(rows, r0 + rows_per_chunk);
  float acc_w = 0.0f, acc_b = 0.0f;
  for (int64_t r = r0; r < r1; ++r) {
    const float d = load(dout[r * C + c]);
    acc_w += d * (load(x[r * C + c]) - mean[r]) * rstd[r];
    acc_b += d;
  }
  partial_w[blockIdx.y * C + c] = acc_w;
  partial_b[blockIdx.y * C + c] = acc_b;
}

template <typename T>
__global__ void layernorm_backward_params_finish_kernel(T* dweight, T* dbias, const float* partial_w,
                                                        const float* partial_b, int64_t chunks, int64_t C) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  float w = 0.0f, b = 0.0f;
  for (int64_t i = 0; i < chunks; ++i) {
    w += partial_w[i * C + c];
    b += partial_b[i * C + c];
  }
  if (dweight != nullptr) dweight[c] = store<T>(load(dweight[c]) + w);
  if (dbias != nullptr) dbias[c] = store<T>(load(dbias[c]) + b);
}

}  // namespace

void layernorm(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight, const Tensor& bias,
               float eps) {
  const OpContext ctx(out);
  require_same_dtype("layernorm", x.dtype(), {&out, &weight, &bias});
  const int64_t C = x.size(-1), rows = rows_of(x);
  if (rows == 0) return;
  dispatch_float(x.dtype(), "layernorm", [&](auto tag) {
    using T = decltype(tag);
    const unsigned blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
    layernorm_forward_kernel<T><<<blocks, kWarpsPerBlock * 32, 0, ctx.stream()>>>(
        ptr<T>(out), ptr<float>(mean), ptr<float>(rstd), ptr<T>(x), ptr<T>(weight),
        bias.defined() ? ptr<T>(bias) : nullptr, rows, C, eps);
    DTRAIN_LAUNCH_CHECK();
  });
}

void layernorm_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd) {
  const OpContext ctx(dout);
  require_same_dtype("layernorm_backward", x.dtype(), {&dout, &weight, &dx, &dweight, &dbias});
  const int64_t C = x.size(-1), rows = rows_of(x);
  if (rows == 0 || C == 0) return;
  dispatch_float(x.dtype(), "layernorm_backward", [&](auto tag) {
    using T = decltype(tag);
    if (dx.defined()) {
      const unsigned blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
      layernorm_backward_dx_kernel<T><<<blocks, kWarpsPerBlock * 32, 0, ctx.stream()>>>(
          ptr<T>(dx), ptr<T>(dout), ptr<T>(x), ptr<T>(weight), ptr<float>(mean), ptr<float>(rstd), rows, C);
      DTRAIN_LAUNCH_CHECK();
    }
    if (dweight.defined() || dbias.defined()) {
      constexpr int kThreads = 256;
      const int64_t col_blocks = (C + kThreads - 1) / kThreads;
      int64_t chunks = std::min<int64_t>((rows + 31) / 32, 1024);
      while (chunks > 1 && chunks * col_blocks > 8192) chunks /= 2;
      const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
      chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
      Tensor partial = ctx.scratch({2, chunks, C});
      float* pw = ptr<float>(partial);
      float* pb = pw + chunks * C;
      const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(chunks));
      layernorm_backward_params_partial_kernel<T><<<grid, kThreads, 0, ctx.stream()>>>(
          pw, pb, ptr<T>(dout), ptr<T>(x), ptr<float>(mean), ptr<float>(rstd), rows, C, rows_per_chunk);
      DTRAIN_LAUNCH_CHECK();
      layernorm_backward_params_finish_kernel<T><<<static_cast<unsigned>(col_blocks), kThreads, 0, ctx.stream()>>>(
          dweight.defined() ? ptr<T>(dweight) : nullptr, dbias.defined() ? ptr<T>(dbias) : nullptr, pw, pb, chunks,
          C);
      DTRAIN_LAUNCH_CHECK();
    }
  });
}

}  // namespace dtrain::cuda
