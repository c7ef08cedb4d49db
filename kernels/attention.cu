// Causal multi-head attention, the straightforward implementation ("matmul"),
// and the choice between it and the flash-style one (attention_flash.cu).
//
// Layout: qkv [B, T, 3, NH, hs] (q, k, v side by side), out [B, T, NH, hs],
// lse [B, NH, T]. The GEMMs want each head contiguous, so q, k, v are first
// permuted into [3][B*NH, T, hs] scratch (in the input dtype), then:
//   forward:  S = scale * Q K^T (f32)   -> P = causal softmax(S) (input dtype), lse
//             O = P V (f32)             -> out
//   backward: S again, P = exp(S - lse) (masked), D_i = dout_i . out_i
//             dV = P^T dO, dP = dO V^T, dS = P (dP - D) scale,
//             dQ = dS K, dK = dS^T Q (f32) -> dqkv +=
// Every buffer of scores is [B*NH, T, T]: quadratic memory, from the caching
// allocator, so a warm step does not reach cudaMalloc.
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "attention.cuh"
#include "attention_tc.h"
#include "gemm.cuh"

namespace dtrain::cuda {
namespace {

// Index in a [parts][B, NH, T, hs] layout of element i of a [B, T, parts, NH, hs] tensor.
__device__ __forceinline__ int64_t head_major_index(int64_t i, int64_t B, int64_t T_len, int64_t NH, int64_t hs,
                                                    int parts) {
  int64_t r = i;
  const int64_t d = r % hs;
  r /= hs;
  const int64_t h = r % NH;
  r /= NH;
  const int64_t s = r % parts;
  r /= parts;
  const int64_t t = r % T_len;
  const int64_t b = r / T_len;
  return s * (B * NH * T_len * hs) + ((b * NH + h) * T_len + t) * hs + d;
}

// src [B, T, parts, NH, hs] -> dst [parts][B, NH, T, hs] (parts = 3 for qkv, 1 for dout)
template <typename T>
__global__ void permute_heads_kernel(T* dst, const T* src, int64_t B, int64_t T_len, int64_t NH, int64_t hs,
                                     int parts) {
  const int64_t total = B * T_len * parts * NH * hs;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total; i += stride) {
    dst[head_major_index(i, B, T_len, NH, hs, parts)] = src[i];
  }
}

// out [B, T, NH, hs] (=, or += when accumulate) from src [B, NH, T, hs] (f32),
// repeated for `parts` consecutive blocks of src and of the out row
// (parts = 3 writes dq, dk, dv into dqkv's three thirds).
template <typename T>
__global__ void unpermute_kernel(T* out, const float* src, int64_t B, int64_t T_len, int64_t NH, int64_t hs, int parts,
                                 bool accumulate) {
  const int64_t total = B * T_len * parts * NH * hs;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total; i += stride) {
    const float v = src[head_major_index(i, B, T_len, NH, hs, parts)];
    out[i] = store<T>(accumulate ? load(out[i]) + v : v);
  }
}

// One warp per score row (b*NH + h, i): P[j] = exp(S[j] - lse) for j <= i, else 0.
template <typename T>
__global__ void causal_softmax_kernel(T* P, float* lse, const float* S, int64_t rows, int64_t T_len) {
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  const int64_t i = row % T_len;
  const float* s = S + row * T_len;
  float m = -INFINITY;
  for (int64_t j = lane; j <= i; j += 32) m = fmaxf(m, s[j]);
  m = warp_max(m);
  float sum = 0.0f;
  for (int64_t j = lane; j <= i; j += 32) sum += expf(s[j] - m);
  sum = warp_sum(sum);
  const float row_lse = m + logf(sum);
  T* p = P + row * T_len;
  for (int64_t j = lane; j < T_len; j += 32) p[j] = store<T>(j <= i ? expf(s[j] - row_lse) : 0.0f);
  if (lane == 0) lse[row] = row_lse;
}

// Rebuilds P from S and the saved lse (elementwise).
template <typename T>
__global__ void softmax_from_lse_kernel(T* P, const float* S, const float* lse, int64_t rows, int64_t T_len) {
  const int64_t total = rows * T_len;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total; idx += stride) {
    const int64_t row = idx / T_len, j = idx % T_len, i = row % T_len;
    P[idx] = store<T>(j <= i ? expf(S[idx] - lse[row]) : 0.0f);
  }
}

// dS = P (dP - D_row) scale, written over P.
template <typename T>
__global__ void softmax_backward_kernel(T* P_dS, const float* dP, const float* D, int64_t rows, int64_t T_len,
                                        float scale) {
  const int64_t total = rows * T_len;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total; idx += stride) {
    const int64_t row = idx / T_len;
    P_dS[idx] = store<T>(load(P_dS[idx]) * (dP[idx] - D[row]) * scale);
  }
}

// One warp per (b, t, h): D[(b*NH + h)*T + t] = dot(dout, out) over the head.
template <typename T>
__global__ void row_dot_kernel(float* D, const T* dout, const T* out, int64_t B, int64_t T_len, int64_t NH,
                               int64_t hs) {
  const int lane = threadIdx.x % 32;
  const int64_t w = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  if (w >= B * T_len * NH) return;
  const int64_t h = w % NH, t = (w / NH) % T_len, b = w / (NH * T_len);
  const T* a = dout + w * hs;  // [B, T, NH, hs] is exactly w * hs
  const T* o = out + w * hs;
  float acc = 0.0f;
  for (int64_t d = lane; d < hs; d += 32) acc += load(a[d]) * load(o[d]);
  acc = warp_sum(acc);
  if (lane == 0) D[(b * NH + h) * T_len + t] = acc;
}

struct Dims {
  int64_t B, T, C, NH, hs, BH;
};
Dims dims_of(const Tensor& qkv, int64_t num_heads) {
  Dims d{};
  d.B = qkv.size(0);
  d.T = qkv.size(1);
  d.C = qkv.size(2) / 3;
  d.NH = num_heads;
  d.hs = d.C / num_heads;
  d.BH = d.B * d.NH;
  return d;
}

// A batched GEMM over the B*NH heads with contiguous [T, *] matrices.
void head_gemm(const OpContext& ctx, DType in_type, const void* a, const void* b, float* out, bool trans_a,
               bool trans_b, int64_t m, int64_t n, int64_t k, int64_t batch, float alpha) {
  GemmArgs g;
  g.a = a;
  g.b = b;
  g.out = out;
  g.in_type = in_type;
  g.out_type = DType::f32;
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.m = m;
  g.n = n;
  g.k = k;
  g.batch = batch;
  g.stride_a = m * k;
  g.stride_b = k * n;
  g.stride_out = m * n;
  g.alpha = alpha;
  gemm(g, ctx.stream(), ctx.device().index());
}

constexpr int kThreads = 256;

// q, k and v of every head, each [BH, T, hs], one after another in scratch.
template <typename T>
Tensor qkv_to_heads(const OpContext& ctx, const Tensor& qkv, const Dims& d) {
  const int64_t head = d.BH * d.T * d.hs;
  Tensor qkv_h = ctx.scratch({3, head}, qkv.dtype());
  permute_heads_kernel<T><<<blocks_for(3 * head, kThreads, 16384), kThreads, 0, ctx.stream()>>>(
      ptr<T>(qkv_h), ptr<T>(qkv), d.B, d.T, d.NH, d.hs, 3);
  DTRAIN_LAUNCH_CHECK();
  return qkv_h;
}

template <typename T>
void attention_matmul(const OpContext& ctx, Tensor& out, Tensor& lse, const Tensor& qkv, const Dims& d) {
  const DType dt = qkv.dtype();
  const int64_t head = d.BH * d.T * d.hs;  // elements of one of q, k, v
  const float scale = 1.0f / std::sqrt(static_cast<float>(d.hs));
  const Tensor qkv_h = qkv_to_heads<T>(ctx, qkv, d);
  const T* q = ptr<T>(qkv_h);
  const T* k = q + head;
  const T* v = k + head;
  Tensor S = ctx.scratch({d.BH, d.T, d.T});
  head_gemm(ctx, dt, q, k, ptr<float>(S), false, true, d.T, d.T, d.hs, d.BH, scale);
  Tensor P = ctx.scratch({d.BH, d.T, d.T}, dt);
  const int64_t rows = d.BH * d.T;
  causal_softmax_kernel<T><<<static_cast<unsigned>((rows + 7) / 8), kThreads, 0, ctx.stream()>>>(
      ptr<T>(P), ptr<float>(lse), ptr<float>(S), rows, d.T);
  DTRAIN_LAUNCH_CHECK();
  S = Tensor();  // back to the cache before the next allocation
  Tensor O = ctx.scratch({head});
  head_gemm(ctx, dt, ptr<T>(P), v, ptr<float>(O), false, false, d.T, d.hs, d.T, d.BH, 1.0f);
  unpermute_kernel<T><<<blocks_for(head, kThreads, 16384), kThreads, 0, ctx.stream()>>>(ptr<T>(out), ptr<float>(O), d.B,
                                                                                        d.T, d.NH, d.hs, 1, false);
  DTRAIN_LAUNCH_CHECK();
}

template <typename T>
void attention_backward_matmul(const OpContext& ctx, Tensor& dqkv, const Tensor& dout, const Tensor& qkv,
                               const Tensor& out, const Tensor& lse, const Dims& d) {
  const DType dt = qkv.dtype();
  const int64_t head = d.BH * d.T * d.hs;
  const int64_t rows = d.BH * d.T;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d.hs));
  const Tensor qkv_h = qkv_to_heads<T>(ctx, qkv, d);
  const T* q = ptr<T>(qkv_h);
  const T* k = q + head;
  const T* v = k + head;
  Tensor dO = ctx.scratch({head}, dt);  // dout in head layout
  permute_heads_kernel<T><<<blocks_for(head, kThreads, 16384), kThreads, 0, ctx.stream()>>>(ptr<T>(dO), ptr<T>(dout),
                                                                                            d.B, d.T, d.NH, d.hs, 1);
  DTRAIN_LAUNCH_CHECK();
  Tensor D = ctx.scratch({rows});
  attention_row_dot(ctx, ptr<float>(D), dout, out, d.NH);
  Tensor S = ctx.scratch({d.BH, d.T, d.T});
  head_gemm(ctx, dt, q, k, ptr<float>(S), false, true, d.T, d.T, d.hs, d.BH, scale);
  Tensor P = ctx.scratch({d.BH, d.T, d.T}, dt);
  softmax_from_lse_kernel<T><<<blocks_for(rows * d.T, kThreads, 16384), kThreads, 0, ctx.stream()>>>(
      ptr<T>(P), ptr<float>(S), ptr<float>(lse), rows, d.T);
  DTRAIN_LAUNCH_CHECK();
  Tensor grads = ctx.scratch({3, head});  // dq, dk, dv (f32)
  float* dq = ptr<float>(grads);
  float* dk = dq + head;
  float* dv = dk + head;
  head_gemm(ctx, dt, ptr<T>(P), ptr<T>(dO), dv, true, false, d.T, d.hs, d.T, d.BH, 1.0f);     // dV = P^T dO
  head_gemm(ctx, dt, ptr<T>(dO), v, ptr<float>(S), false, true, d.T, d.T, d.hs, d.BH, 1.0f);  // dP = dO V^T
  softmax_backward_kernel<T><<<blocks_for(rows * d.T, kThreads, 16384), kThreads, 0, ctx.stream()>>>(
      ptr<T>(P), ptr<float>(S), ptr<float>(D), rows, d.T, scale);
  DTRAIN_LAUNCH_CHECK();
  head_gemm(ctx, dt, ptr<T>(P), k, dq, false, false, d.T, d.hs, d.T, d.BH, 1.0f);  // dQ = dS K
  head_gemm(ctx, dt, ptr<T>(P), q, dk, true, false, d.T, d.hs, d.T, d.BH, 1.0f);   // dK = dS^T Q
  unpermute_kernel<T><<<blocks_for(3 * head, kThreads, 16384), kThreads, 0, ctx.stream()>>>(ptr<T>(dqkv), dq, d.B, d.T,
                                                                                            d.NH, d.hs, 3, true);
  DTRAIN_LAUNCH_CHECK();
}

}  // namespace

// Read on every call (a getenv is cheap next to an attention launch), so a
// test can compare both implementations in one process.
AttentionImpl attention_impl() {
  const char* v = std::getenv("DTRAIN_ATTENTION");
  if (v == nullptr || *v == '\0') return kDefaultAttentionImpl;
  if (std::strcmp(v, "matmul") == 0) return AttentionImpl::matmul;
  if (std::strcmp(v, "flash") == 0) return AttentionImpl::flash;
  if (std::strcmp(v, "tc") == 0) return AttentionImpl::tc;
  DTRAIN_THROW("DTRAIN_ATTENTION='", v,
               "' is not an attention implementation; use 'matmul', 'flash' or 'tc' (or unset it for the default)");
}

void attention_row_dot(const OpContext& ctx, float* D, const Tensor& dout, const Tensor& out, int64_t num_heads) {
  const int64_t B = out.size(0), T_len = out.size(1), hs = out.size(2) / num_heads;
  const int64_t warps = B * T_len * num_heads;
  if (warps == 0) return;
  dispatch_float(out.dtype(), "attention_backward", [&](auto tag) {
    using T = decltype(tag);
    row_dot_kernel<T><<<static_cast<unsigned>((warps + 7) / 8), kThreads, 0, ctx.stream()>>>(
        D, ptr<T>(dout), ptr<T>(out), B, T_len, num_heads, hs);
    DTRAIN_LAUNCH_CHECK();
  });
}

void attention(Tensor& out, Tensor& lse, const Tensor& qkv, int64_t num_heads) {
  const OpContext ctx(out);
  require_same_dtype("attention", qkv.dtype(), {&out});
  const Dims d = dims_of(qkv, num_heads);
  if (d.B == 0 || d.T == 0 || d.hs == 0) return;
  if (attention_impl() == AttentionImpl::tc && tc_attention_supports(qkv, num_heads, {&out})) {
    attention_tc(out, lse, qkv, num_heads, /*causal=*/true);
    return;
  }
  if (attention_impl() == AttentionImpl::flash && flash_attention_supports(d.hs)) {
    attention_flash(ctx, out, lse, qkv, num_heads);
    return;
  }
  dispatch_float(qkv.dtype(), "attention", [&](auto tag) {
    using T = decltype(tag);
    attention_matmul<T>(ctx, out, lse, qkv, d);
  });
}

void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                        int64_t num_heads) {
  const OpContext ctx(dout);
  require_same_dtype("attention_backward", qkv.dtype(), {&dout, &out, &dqkv});
  const Dims d = dims_of(qkv, num_heads);
  if (d.B == 0 || d.T == 0 || d.hs == 0) return;
  if (attention_impl() == AttentionImpl::tc && tc_attention_supports(qkv, num_heads, {&dqkv, &dout})) {
    attention_backward_tc(dqkv, dout, qkv, out, lse, num_heads, /*causal=*/true);
    return;
  }
  if (attention_impl() == AttentionImpl::flash && flash_attention_supports(d.hs)) {
    attention_backward_flash(ctx, dqkv, dout, qkv, out, lse, num_heads);
    return;
  }
  dispatch_float(qkv.dtype(), "attention_backward", [&](auto tag) {
    using T = decltype(tag);
    attention_backward_matmul<T>(ctx, dqkv, dout, qkv, out, lse, d);
  });
}

}  // namespace dtrain::cuda
