// layernorm forward and backward, f32 math whatever the storage type.
//
// Forward: one warp per row (rows are C = 768..8192 wide: a warp streams a
// row with coalesced loads and needs no shared memory or block barrier). Each
// lane takes VEC = 8 consecutive elements per step (16-byte loads for bf16)
// when C is a multiple of 8 and the pointers are 16-byte aligned, else one;
// the row's second and third reads hit L1/L2 (layernorm_row.cuh, shared with
// add_layernorm).
// Backward, rows of up to 2048 aligned channels (GPT-2 sizes): one fused pass.
// Each warp walks rows with a grid stride, writes dx and keeps its lanes'
// dweight/dbias sums in registers; the warps of a block add theirs into shared
// memory one after another (fixed order), each block writes one partial row,
// and a second small kernel sums the partials in block order. Deterministic,
// no atomics, and dout and x are read from DRAM once.
// Other rows: dx row by row (a warp each), then dweight/dbias as column
// reductions over row chunks (a second read of dout and x).
#include <algorithm>
#include <map>
#include <mutex>

#include "common.cuh"
#include "layernorm_row.cuh"

namespace dtrain::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kVec = 8;

template <typename T, int VEC>
__global__ void layernorm_forward_kernel(T* out, float* mean_out, float* rstd_out, const T* x, const T* weight,
                                         const T* bias, int64_t rows, int64_t C, float eps) {
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / 32;
  if (row >= rows) return;
  const T* xr = x + row * C;
  float sum = 0.0f;
  for (int64_t c = lane * VEC; c < C; c += 32 * VEC) {
    float v[VEC];
    load_vec<T, VEC>(xr + c, v);
#pragma unroll
    for (int k = 0; k < VEC; ++k) sum += v[k];
  }
  const float mean = warp_sum(sum) / static_cast<float>(C);
  layernorm_finish_row<T, VEC>(out + row * C, mean_out + row, rstd_out + row, xr, weight, bias, C, eps, mean, lane);
}

// dx += rstd * (w*dout - mean(w*dout) - xhat * mean(w*dout*xhat)).
template <typename T, int VEC>
__global__ void layernorm_backward_dx_kernel(T* dx, const T* dout, const T* x, const T* weight, const float* mean,
                                             const float* rstd, int64_t rows, int64_t C) {
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / 32;
  if (row >= rows) return;
  const T* xr = x + row * C;
  const T* dr = dout + row * C;
  const float m = mean[row], r = rstd[row];
  float sum_dn = 0.0f, sum_dn_xhat = 0.0f;
  for (int64_t c = lane * VEC; c < C; c += 32 * VEC) {
    float xv[VEC], dv[VEC], wv[VEC];
    load_vec<T, VEC>(xr + c, xv);
    load_vec<T, VEC>(dr + c, dv);
    load_vec<T, VEC>(weight + c, wv);
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float dn = wv[k] * dv[k];
      sum_dn += dn;
      sum_dn_xhat += dn * (xv[k] - m) * r;
    }
  }
  const float mean_dn = warp_sum(sum_dn) / static_cast<float>(C);
  const float mean_dn_xhat = warp_sum(sum_dn_xhat) / static_cast<float>(C);
  T* dxr = dx + row * C;
  for (int64_t c = lane * VEC; c < C; c += 32 * VEC) {
    float xv[VEC], dv[VEC], wv[VEC], gv[VEC];
    load_vec<T, VEC>(xr + c, xv);
    load_vec<T, VEC>(dr + c, dv);
    load_vec<T, VEC>(weight + c, wv);
    load_vec<T, VEC>(dxr + c, gv);
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float xhat = (xv[k] - m) * r;
      gv[k] += r * (wv[k] * dv[k] - mean_dn - xhat * mean_dn_xhat);
    }
    store_vec<T, VEC>(dxr + c, gv);
  }
}

// Pass 1: partial[chunk][c] sums of dout*xhat (dweight) and dout (dbias);
// each thread owns VEC adjacent columns of one row chunk.
template <typename T, int VEC>
__global__ void layernorm_backward_params_partial_kernel(float* partial_w, float* partial_b, const T* dout, const T* x,
                                                         const float* mean, const float* rstd, int64_t rows, int64_t C,
                                                         int64_t rows_per_chunk) {
  const int64_t c = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) * VEC;
  if (c >= C) return;
  const int64_t r0 = blockIdx.y * rows_per_chunk;
  const int64_t r1 = min(rows, r0 + rows_per_chunk);
  float acc_w[VEC], acc_b[VEC];
#pragma unroll
  for (int k = 0; k < VEC; ++k) acc_w[k] = acc_b[k] = 0.0f;
  for (int64_t r = r0; r < r1; ++r) {
    float dv[VEC], xv[VEC];
    load_vec<T, VEC>(dout + r * C + c, dv);
    load_vec<T, VEC>(x + r * C + c, xv);
    const float m = mean[r], rs = rstd[r];
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      acc_w[k] += dv[k] * (xv[k] - m) * rs;
      acc_b[k] += dv[k];
    }
  }
#pragma unroll
  for (int k = 0; k < VEC; ++k) {
    partial_w[blockIdx.y * C + c + k] = acc_w[k];
    partial_b[blockIdx.y * C + c + k] = acc_b[k];
  }
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

// The fused backward (see the file comment). NCH = 256-channel chunks per row
// (each lane owns 8 channels of every chunk).
template <typename T, int NCH>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    layernorm_backward_fused_kernel(T* dx, float* partial_w, float* partial_b, const T* dout, const T* x,
                                    const T* weight, const float* mean, const float* rstd, int64_t rows, int64_t C) {
  extern __shared__ float acc_smem[];  // [2][C]
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  float aw[NCH][kVec], ab[NCH][kVec];
#pragma unroll
  for (int ch = 0; ch < NCH; ++ch) {
#pragma unroll
    for (int k = 0; k < kVec; ++k) aw[ch][k] = ab[ch][k] = 0.0f;
  }
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t row = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + warp; row < rows; row += warps) {
    const T* xr = x + row * C;
    const T* dr = dout + row * C;
    const float m = mean[row], r = rstd[row];
    float sum_dn = 0.0f, sum_dn_xhat = 0.0f;
#pragma unroll
    for (int ch = 0; ch < NCH; ++ch) {
      const int64_t c = ch * 256 + lane * kVec;
      if (c < C) {
        float xv[kVec], dv[kVec], wv[kVec];
        load_vec<T, kVec>(xr + c, xv);
        load_vec<T, kVec>(dr + c, dv);
        load_vec<T, kVec>(weight + c, wv);
#pragma unroll
        for (int k = 0; k < kVec; ++k) {
          const float xhat = (xv[k] - m) * r;
          const float dn = wv[k] * dv[k];
          sum_dn += dn;
          sum_dn_xhat += dn * xhat;
          aw[ch][k] += dv[k] * xhat;
          ab[ch][k] += dv[k];
        }
      }
    }
    if (dx == nullptr) continue;  // uniform: only dweight/dbias wanted
    const float mean_dn = warp_sum(sum_dn) / static_cast<float>(C);
    const float mean_dn_xhat = warp_sum(sum_dn_xhat) / static_cast<float>(C);
    T* dxr = dx + row * C;
#pragma unroll
    for (int ch = 0; ch < NCH; ++ch) {
      const int64_t c = ch * 256 + lane * kVec;
      if (c < C) {
        float xv[kVec], dv[kVec], wv[kVec], gv[kVec];
        load_vec<T, kVec>(xr + c, xv);
        load_vec<T, kVec>(dr + c, dv);
        load_vec<T, kVec>(weight + c, wv);
        load_vec<T, kVec>(dxr + c, gv);
#pragma unroll
        for (int k = 0; k < kVec; ++k) {
          const float xhat = (xv[k] - m) * r;
          gv[k] += r * (wv[k] * dv[k] - mean_dn - xhat * mean_dn_xhat);
        }
        store_vec<T, kVec>(dxr + c, gv);
      }
    }
  }
  // Block reduction in warp order (deterministic), then one partial row per block.
  float* sw = acc_smem;
  float* sb = acc_smem + C;
  for (int64_t i = threadIdx.x; i < 2 * C; i += blockDim.x) acc_smem[i] = 0.0f;
  __syncthreads();
  for (int w = 0; w < kWarpsPerBlock; ++w) {
    if (warp == w) {
#pragma unroll
      for (int ch = 0; ch < NCH; ++ch) {
        const int64_t c = ch * 256 + lane * kVec;
        if (c < C) {
#pragma unroll
          for (int k = 0; k < kVec; ++k) {
            sw[c + k] += aw[ch][k];
            sb[c + k] += ab[ch][k];
          }
        }
      }
    }
    __syncthreads();
  }
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
    partial_w[blockIdx.x * C + i] = sw[i];
    partial_b[blockIdx.x * C + i] = sb[i];
  }
}

int sm_count(int device) {
  static std::mutex mutex;
  static std::map<int, int> counts;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = counts.find(device);
  if (it != counts.end()) return it->second;
  int n = 0;
  DTRAIN_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
  counts[device] = n;
  return n;
}

template <typename T, int NCH>
void launch_backward_fused(const OpContext& ctx, Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout,
                           const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd, int64_t rows,
                           int64_t C) {
  const size_t smem = 2 * static_cast<size_t>(C) * sizeof(float);  // at most 16 KiB (C <= 2048)
  // One resident wave: as many blocks as fit on the GPU at once (registers
  // limit it: the per-lane sums live in registers).
  int per_sm = 0;
  DTRAIN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, layernorm_backward_fused_kernel<T, NCH>,
                                                                  kWarpsPerBlock * 32, smem));
  const int64_t row_blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const int64_t blocks =
      std::min<int64_t>(row_blocks, std::max(1, per_sm) * static_cast<int64_t>(sm_count(ctx.device().index())));
  Tensor partial = ctx.scratch({2, blocks, C});
  float* pw = ptr<float>(partial);
  float* pb = pw + blocks * C;
  layernorm_backward_fused_kernel<T, NCH><<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, smem, ctx.stream()>>>(
      dx.defined() ? ptr<T>(dx) : nullptr, pw, pb, ptr<T>(dout), ptr<T>(x), ptr<T>(weight), ptr<float>(mean),
      ptr<float>(rstd), rows, C);
  DTRAIN_LAUNCH_CHECK();
  if (!dweight.defined() && !dbias.defined()) return;
  constexpr int kThreads = 256;
  layernorm_backward_params_finish_kernel<T>
      <<<static_cast<unsigned>((C + kThreads - 1) / kThreads), kThreads, 0, ctx.stream()>>>(
          dweight.defined() ? ptr<T>(dweight) : nullptr, dbias.defined() ? ptr<T>(dbias) : nullptr, pw, pb, blocks, C);
  DTRAIN_LAUNCH_CHECK();
}

template <typename T, int VEC>
void launch_forward(const OpContext& ctx, Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& x,
                    const Tensor& weight, const Tensor& bias, int64_t rows, int64_t C, float eps) {
  const unsigned blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  layernorm_forward_kernel<T, VEC><<<blocks, kWarpsPerBlock * 32, 0, ctx.stream()>>>(
      ptr<T>(out), ptr<float>(mean), ptr<float>(rstd), ptr<T>(x), ptr<T>(weight),
      bias.defined() ? ptr<T>(bias) : nullptr, rows, C, eps);
  DTRAIN_LAUNCH_CHECK();
}

template <typename T, int VEC>
void launch_backward(const OpContext& ctx, Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout,
                     const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd, int64_t rows,
                     int64_t C) {
  if (dx.defined()) {
    const unsigned blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
    layernorm_backward_dx_kernel<T, VEC><<<blocks, kWarpsPerBlock * 32, 0, ctx.stream()>>>(
        ptr<T>(dx), ptr<T>(dout), ptr<T>(x), ptr<T>(weight), ptr<float>(mean), ptr<float>(rstd), rows, C);
    DTRAIN_LAUNCH_CHECK();
  }
  if (!dweight.defined() && !dbias.defined()) return;
  constexpr int kThreads = 256;
  const int64_t col_threads = C / VEC;  // C is a multiple of VEC
  const int64_t col_blocks = (col_threads + kThreads - 1) / kThreads;
  int64_t chunks = std::min<int64_t>((rows + 31) / 32, 1024);
  while (chunks > 1 && chunks * col_blocks > 4096) chunks /= 2;
  const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
  chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  Tensor partial = ctx.scratch({2, chunks, C});
  float* pw = ptr<float>(partial);
  float* pb = pw + chunks * C;
  const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(chunks));
  layernorm_backward_params_partial_kernel<T, VEC><<<grid, kThreads, 0, ctx.stream()>>>(
      pw, pb, ptr<T>(dout), ptr<T>(x), ptr<float>(mean), ptr<float>(rstd), rows, C, rows_per_chunk);
  DTRAIN_LAUNCH_CHECK();
  layernorm_backward_params_finish_kernel<T>
      <<<static_cast<unsigned>((C + kThreads - 1) / kThreads), kThreads, 0, ctx.stream()>>>(
          dweight.defined() ? ptr<T>(dweight) : nullptr, dbias.defined() ? ptr<T>(dbias) : nullptr, pw, pb, chunks, C);
  DTRAIN_LAUNCH_CHECK();
}

}  // namespace

void layernorm(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight, const Tensor& bias,
               float eps) {
  const OpContext ctx(out);
  require_same_dtype("layernorm", x.dtype(), {&out, &weight, &bias});
  const int64_t C = x.size(-1), rows = rows_of(x);
  if (rows == 0) return;
  const bool vec = rows_vectorizable(C, kVec, {&out, &x, &weight, &bias});
  dispatch_float(x.dtype(), "layernorm", [&](auto tag) {
    using T = decltype(tag);
    if (vec) {
      launch_forward<T, kVec>(ctx, out, mean, rstd, x, weight, bias, rows, C, eps);
    } else {
      launch_forward<T, 1>(ctx, out, mean, rstd, x, weight, bias, rows, C, eps);
    }
  });
}

void layernorm_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd) {
  const OpContext ctx(dout);
  require_same_dtype("layernorm_backward", x.dtype(), {&dout, &weight, &dx, &dweight, &dbias});
  const int64_t C = x.size(-1), rows = rows_of(x);
  if (rows == 0 || C == 0) return;
  const bool vec = rows_vectorizable(C, kVec, {&dx, &dout, &x, &weight});
  dispatch_float(x.dtype(), "layernorm_backward", [&](auto tag) {
    using T = decltype(tag);
    if (vec && C <= 256) {
      launch_backward_fused<T, 1>(ctx, dx, dweight, dbias, dout, x, weight, mean, rstd, rows, C);
    } else if (vec && C <= 512) {
      launch_backward_fused<T, 2>(ctx, dx, dweight, dbias, dout, x, weight, mean, rstd, rows, C);
    } else if (vec && C <= 1024) {
      launch_backward_fused<T, 4>(ctx, dx, dweight, dbias, dout, x, weight, mean, rstd, rows, C);
    } else if (vec && C <= 2048) {
      launch_backward_fused<T, 8>(ctx, dx, dweight, dbias, dout, x, weight, mean, rstd, rows, C);
    } else if (vec) {
      launch_backward<T, kVec>(ctx, dx, dweight, dbias, dout, x, weight, mean, rstd, rows, C);
    } else {
      launch_backward<T, 1>(ctx, dx, dweight, dbias, dout, x, weight, mean, rstd, rows, C);
    }
  });
}

}  // namespace dtrain::cuda
