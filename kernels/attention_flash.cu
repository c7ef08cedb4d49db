// Causal attention, flash-style: tiled over keys with an online softmax, so
// memory is linear in T (no [T, T] buffer); selected by DTRAIN_ATTENTION=flash.
//
// Design (first version, written for correctness; see docs/cuda.md):
//  - A block owns consecutive rows of one (batch, head), a warp per row
//    (kFwdRows in the forward pass, kBwdRows in backward: as many as keep the
//    staged tiles under 48 KiB of shared memory at head size 128; more rows per
//    block means each staged tile is reused more).
//  - Forward: key/value tiles of kTile rows are staged in shared memory as
//    f32 (rows padded by one word, so lanes reading different rows of one
//    column hit different banks). Lane l scores key j0 + l against its
//    warp's query; the tile's scores update the running max m and sum l
//    (online softmax), and each lane accumulates its hs/32 output columns.
//    lse = m + log(l) is saved for backward.
//  - Backward, two kernels and no atomics: a query-row pass computes dQ from
//    key/value tiles, a key-row pass computes dK and dV from query/dout
//    tiles; both rebuild P = exp(scale q.k - lse) and use
//    dS = P (dO.v - D), D = dO.out per query row (attention_row_dot).
//  - CUDA cores only (no tensor cores yet): the tensor-core version is the
//    next step once this one has matched the matmul implementation on a GPU.
#include <cmath>

#include "attention.cuh"

namespace dtrain::cuda {
namespace {

constexpr int kFwdRows = 16;  // warps (query rows) per forward block
constexpr int kBwdRows = 8;   // warps (query or key rows) per backward block
constexpr int kTile = 32;     // rows per staged tile: one per lane
constexpr unsigned kFull = 0xffffffffu;

struct FlashDims {
  int64_t T, NH, hs, C;
};

template <typename T, int NPL>
__global__ void __launch_bounds__(kFwdRows * 32)
    flash_forward_kernel(T* out, float* lse, const T* qkv, FlashDims d, float scale) {
  extern __shared__ float smem[];
  const int64_t ld = d.hs + 1;
  float* Ks = smem;             // [kTile][ld]
  float* Vs = Ks + kTile * ld;  // [kTile][ld]
  float* Qs = Vs + kTile * ld;  // [kFwdRows][ld]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.y, b = bh / d.NH, h = bh % d.NH;
  const int64_t row_stride = 3 * d.C;
  const T* base = qkv + b * d.T * row_stride + h * d.hs;  // q at +0, k at +C, v at +2C
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kFwdRows;
  const int64_t i = i0 + warp;
  for (int64_t idx = threadIdx.x; idx < kFwdRows * d.hs; idx += blockDim.x) {
    const int64_t r = idx / d.hs, c = idx % d.hs;
    Qs[r * ld + c] = i0 + r < d.T ? load(base[(i0 + r) * row_stride + c]) : 0.0f;
  }
  float m = -INFINITY, l = 0.0f, o[NPL];
#pragma unroll
  for (int c = 0; c < NPL; ++c) o[c] = 0.0f;
  const int64_t last_key = min(i0 + kFwdRows, d.T) - 1;
  for (int64_t j0 = 0; j0 <= last_key; j0 += kTile) {
    __syncthreads();  // the previous tile is consumed (and Qs is written, first time)
    for (int64_t idx = threadIdx.x; idx < kTile * d.hs; idx += blockDim.x) {
      const int64_t r = idx / d.hs, c = idx % d.hs, j = j0 + r;
      Ks[r * ld + c] = j < d.T ? load(base[j * row_stride + d.C + c]) : 0.0f;
      Vs[r * ld + c] = j < d.T ? load(base[j * row_stride + 2 * d.C + c]) : 0.0f;
    }
    __syncthreads();
    if (i < d.T) {  // uniform per warp
      const int64_t j = j0 + lane;
      const bool valid = j <= i;
      float s = -INFINITY;
      if (valid) {
        float acc = 0.0f;
        for (int64_t c = 0; c < d.hs; ++c) acc += Qs[warp * ld + c] * Ks[lane * ld + c];
        s = acc * scale;
      }
      // Key 0 is in the first tile for every row, so m_new is finite from then on.
      const float m_new = fmaxf(m, warp_max(s));
      const float p = valid ? expf(s - m_new) : 0.0f;
      const float corr = expf(m - m_new);
      l = l * corr + warp_sum(p);
#pragma unroll
      for (int c = 0; c < NPL; ++c) o[c] *= corr;
      for (int jj = 0; jj < kTile; ++jj) {
        const float pj = __shfl_sync(kFull, p, jj);
#pragma unroll
        for (int c = 0; c < NPL; ++c) {
          const int64_t col = lane + 32 * c;
          if (col < d.hs) o[c] += pj * Vs[jj * ld + col];
        }
      }
      m = m_new;
    }
  }
  if (i < d.T) {
    T* dst = out + (b * d.T + i) * d.C + h * d.hs;
#pragma unroll
    for (int c = 0; c < NPL; ++c) {
      const int64_t col = lane + 32 * c;
      if (col < d.hs) dst[col] = store<T>(o[c] / l);
    }
    if (lane == 0) lse[bh * d.T + i] = m + logf(l);
  }
}

// dQ_i += scale * sum_j dS_ij K_j, one warp per query row.
template <typename T, int NPL>
__global__ void __launch_bounds__(kBwdRows * 32)
    flash_backward_dq_kernel(T* dqkv, const T* dout, const T* qkv, const float* lse, const float* D, FlashDims d,
                             float scale) {
  extern __shared__ float smem[];
  const int64_t ld = d.hs + 1;
  float* Ks = smem;                 // [kTile][ld]
  float* Vs = Ks + kTile * ld;      // [kTile][ld]
  float* Qs = Vs + kTile * ld;      // [kBwdRows][ld]
  float* dOs = Qs + kBwdRows * ld;  // [kBwdRows][ld]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.y, b = bh / d.NH, h = bh % d.NH;
  const int64_t row_stride = 3 * d.C;
  const T* base = qkv + b * d.T * row_stride + h * d.hs;
  const T* dout_base = dout + b * d.T * d.C + h * d.hs;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kBwdRows;
  const int64_t i = i0 + warp;
  for (int64_t idx = threadIdx.x; idx < kBwdRows * d.hs; idx += blockDim.x) {
    const int64_t r = idx / d.hs, c = idx % d.hs;
    const bool in = i0 + r < d.T;
    Qs[r * ld + c] = in ? load(base[(i0 + r) * row_stride + c]) : 0.0f;
    dOs[r * ld + c] = in ? load(dout_base[(i0 + r) * d.C + c]) : 0.0f;
  }
  const float lse_i = i < d.T ? lse[bh * d.T + i] : 0.0f;
  const float D_i = i < d.T ? D[bh * d.T + i] : 0.0f;
  float dq[NPL];
#pragma unroll
  for (int c = 0; c < NPL; ++c) dq[c] = 0.0f;
  const int64_t last_key = min(i0 + kBwdRows, d.T) - 1;
  for (int64_t j0 = 0; j0 <= last_key; j0 += kTile) {
    __syncthreads();
    for (int64_t idx = threadIdx.x; idx < kTile * d.hs; idx += blockDim.x) {
      const int64_t r = idx / d.hs, c = idx % d.hs, j = j0 + r;
      Ks[r * ld + c] = j < d.T ? load(base[j * row_stride + d.C + c]) : 0.0f;
      Vs[r * ld + c] = j < d.T ? load(base[j * row_stride + 2 * d.C + c]) : 0.0f;
    }
    __syncthreads();
    if (i < d.T) {
      const int64_t j = j0 + lane;
      float ds = 0.0f;
      if (j <= i) {
        float qk = 0.0f, dov = 0.0f;
        for (int64_t c = 0; c < d.hs; ++c) {
          qk += Qs[warp * ld + c] * Ks[lane * ld + c];
          dov += dOs[warp * ld + c] * Vs[lane * ld + c];
        }
        const float p = expf(qk * scale - lse_i);
        ds = p * (dov - D_i);
      }
      for (int jj = 0; jj < kTile; ++jj) {
        const float dsj = __shfl_sync(kFull, ds, jj);
#pragma unroll
        for (int c = 0; c < NPL; ++c) {
          const int64_t col = lane + 32 * c;
          if (col < d.hs) dq[c] += dsj * Ks[jj * ld + col];
        }
      }
    }
  }
  if (i < d.T) {
    T* dst = dqkv + (b * d.T + i) * row_stride + h * d.hs;
#pragma unroll
    for (int c = 0; c < NPL; ++c) {
      const int64_t col = lane + 32 * c;
      if (col < d.hs) dst[col] = store<T>(load(dst[col]) + scale * dq[c]);
    }
  }
}

// dK_j += scale * sum_i dS_ij Q_i and dV_j += sum_i P_ij dO_i, one warp per key row.
template <typename T, int NPL>
__global__ void __launch_bounds__(kBwdRows * 32)
    flash_backward_dkv_kernel(T* dqkv, const T* dout, const T* qkv, const float* lse, const float* D, FlashDims d,
                              float scale) {
  extern __shared__ float smem[];
  const int64_t ld = d.hs + 1;
  float* Qs = smem;                   // [kTile][ld]
  float* dOs = Qs + kTile * ld;       // [kTile][ld]
  float* Ks = dOs + kTile * ld;       // [kBwdRows][ld]
  float* Vs = Ks + kBwdRows * ld;     // [kBwdRows][ld]
  float* lse_s = Vs + kBwdRows * ld;  // [kTile]
  float* D_s = lse_s + kTile;         // [kTile]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.y, b = bh / d.NH, h = bh % d.NH;
  const int64_t row_stride = 3 * d.C;
  const T* base = qkv + b * d.T * row_stride + h * d.hs;
  const T* dout_base = dout + b * d.T * d.C + h * d.hs;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kBwdRows;
  const int64_t j = j0 + warp;
  for (int64_t idx = threadIdx.x; idx < kBwdRows * d.hs; idx += blockDim.x) {
    const int64_t r = idx / d.hs, c = idx % d.hs;
    const bool in = j0 + r < d.T;
    Ks[r * ld + c] = in ? load(base[(j0 + r) * row_stride + d.C + c]) : 0.0f;
    Vs[r * ld + c] = in ? load(base[(j0 + r) * row_stride + 2 * d.C + c]) : 0.0f;
  }
  float dk[NPL], dv[NPL];
#pragma unroll
  for (int c = 0; c < NPL; ++c) dk[c] = dv[c] = 0.0f;
  // Queries before j0 never see these keys (causal): start at j0.
  for (int64_t i1 = j0; i1 < d.T; i1 += kTile) {
    __syncthreads();
    for (int64_t idx = threadIdx.x; idx < kTile * d.hs; idx += blockDim.x) {
      const int64_t r = idx / d.hs, c = idx % d.hs, i = i1 + r;
      Qs[r * ld + c] = i < d.T ? load(base[i * row_stride + c]) : 0.0f;
      dOs[r * ld + c] = i < d.T ? load(dout_base[i * d.C + c]) : 0.0f;
    }
    for (int r = threadIdx.x; r < kTile; r += blockDim.x) {
      const int64_t i = i1 + r;
      lse_s[r] = i < d.T ? lse[bh * d.T + i] : 0.0f;
      D_s[r] = i < d.T ? D[bh * d.T + i] : 0.0f;
    }
    __syncthreads();
    if (j < d.T) {
      const int64_t i = i1 + lane;
      float p = 0.0f, ds = 0.0f;
      if (i >= j && i < d.T) {
        float qk = 0.0f, dov = 0.0f;
        for (int64_t c = 0; c < d.hs; ++c) {
          qk += Qs[lane * ld + c] * Ks[warp * ld + c];
          dov += dOs[lane * ld + c] * Vs[warp * ld + c];
        }
        p = expf(qk * scale - lse_s[lane]);
        ds = p * (dov - D_s[lane]);
      }
      for (int ii = 0; ii < kTile; ++ii) {
        const float pi = __shfl_sync(kFull, p, ii);
        const float dsi = __shfl_sync(kFull, ds, ii);
#pragma unroll
        for (int c = 0; c < NPL; ++c) {
          const int64_t col = lane + 32 * c;
          if (col < d.hs) {
            dv[c] += pi * dOs[ii * ld + col];
            dk[c] += dsi * Qs[ii * ld + col];
          }
        }
      }
    }
  }
  if (j < d.T) {
    T* dst = dqkv + (b * d.T + j) * row_stride + h * d.hs;
#pragma unroll
    for (int c = 0; c < NPL; ++c) {
      const int64_t col = lane + 32 * c;
      if (col < d.hs) {
        dst[d.C + col] = store<T>(load(dst[d.C + col]) + scale * dk[c]);
        dst[2 * d.C + col] = store<T>(load(dst[2 * d.C + col]) + dv[c]);
      }
    }
  }
}

FlashDims flash_dims(const Tensor& qkv, int64_t num_heads) {
  FlashDims d{};
  d.T = qkv.size(1);
  d.C = qkv.size(2) / 3;
  d.NH = num_heads;
  d.hs = d.C / num_heads;
  return d;
}

// Calls body(std::integral_constant<int, NPL>) for the smallest NPL with hs <= 32 * NPL.
template <typename F>
void dispatch_npl(int64_t hs, F&& body) {
  if (hs <= 32) {
    body(std::integral_constant<int, 1>{});
  } else if (hs <= 64) {
    body(std::integral_constant<int, 2>{});
  } else if (hs <= 128) {
    body(std::integral_constant<int, 4>{});
  } else {
    DTRAIN_THROW("flash attention supports head sizes up to 128, got ", hs, "; unset DTRAIN_ATTENTION");
  }
}

dim3 flash_grid(const FlashDims& d, int64_t B, int rows_per_block) {
  DTRAIN_CHECK(B * d.NH <= 65535, "flash attention launches one grid row per (batch, head): ", B * d.NH,
               " exceed 65535; unset DTRAIN_ATTENTION or use a smaller batch");
  return dim3(static_cast<unsigned>((d.T + rows_per_block - 1) / rows_per_block), static_cast<unsigned>(B * d.NH));
}

size_t checked_smem(size_t bytes) {
  DTRAIN_CHECK(bytes <= 48 * 1024, "flash attention needs ", bytes, " bytes of shared memory (limit 48 KiB)");
  return bytes;
}

}  // namespace

bool flash_attention_supports(int64_t hs) {
  return hs >= 1 && hs <= 128;
}

void attention_flash(const OpContext& ctx, Tensor& out, Tensor& lse, const Tensor& qkv, int64_t num_heads) {
  const FlashDims d = flash_dims(qkv, num_heads);
  const int64_t B = qkv.size(0);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d.hs));
  const dim3 grid = flash_grid(d, B, kFwdRows);
  const size_t smem = checked_smem((2 * kTile + kFwdRows) * static_cast<size_t>(d.hs + 1) * sizeof(float));
  dispatch_float(qkv.dtype(), "attention", [&](auto tag) {
    using T = decltype(tag);
    dispatch_npl(d.hs, [&](auto npl) {
      flash_forward_kernel<T, decltype(npl)::value>
          <<<grid, kFwdRows * 32, smem, ctx.stream()>>>(ptr<T>(out), ptr<float>(lse), ptr<T>(qkv), d, scale);
      DTRAIN_LAUNCH_CHECK();
    });
  });
}

void attention_backward_flash(const OpContext& ctx, Tensor& dqkv, const Tensor& dout, const Tensor& qkv,
                              const Tensor& out, const Tensor& lse, int64_t num_heads) {
  const FlashDims d = flash_dims(qkv, num_heads);
  const int64_t B = qkv.size(0);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d.hs));
  Tensor D = ctx.scratch({B * d.NH * d.T});
  attention_row_dot(ctx, ptr<float>(D), dout, out, num_heads);
  const dim3 grid = flash_grid(d, B, kBwdRows);
  const size_t smem = checked_smem((2 * kTile + 2 * kBwdRows) * static_cast<size_t>(d.hs + 1) * sizeof(float) +
                                   2 * kTile * sizeof(float));
  dispatch_float(qkv.dtype(), "attention_backward", [&](auto tag) {
    using T = decltype(tag);
    dispatch_npl(d.hs, [&](auto npl) {
      constexpr int kNpl = decltype(npl)::value;
      flash_backward_dq_kernel<T, kNpl><<<grid, kBwdRows * 32, smem, ctx.stream()>>>(
          ptr<T>(dqkv), ptr<T>(dout), ptr<T>(qkv), ptr<float>(lse), ptr<float>(D), d, scale);
      DTRAIN_LAUNCH_CHECK();
      flash_backward_dkv_kernel<T, kNpl><<<grid, kBwdRows * 32, smem, ctx.stream()>>>(
          ptr<T>(dqkv), ptr<T>(dout), ptr<T>(qkv), ptr<float>(lse), ptr<float>(D), d, scale);
      DTRAIN_LAUNCH_CHECK();
    });
  });
}

}  // namespace dtrain::cuda
