// Tensor-core flash attention, backward: adds dQ, dK, dV into dqkv from
// dout, qkv, out and the forward's lse, recomputing the probabilities.
// Deterministic: two kernels, each element of dqkv written by one thread, no
// atomics. The tile loops are attention_tiles.cuh (CPU-emulated in
// tests/ops/test_attention_tiles.cpp); fragments are attention_tc_mma.cuh.
//
// D_i = dout_i . out_i comes first (attention_row_dot, shared with the other
// implementations). Then, with P = exp(scale Q K^T - lse) and dS = P (dP - D):
//  - query pass, a block per query tile of 64 rows, warp = 16 rows:
//      S = Q K^T, dP = dO V^T, dS, dQ += dS K   over the key tiles it sees
//  - key pass, a block per key tile of 64 rows, warp = 16 keys, transposed:
//      S^T = K Q^T, dP^T = V dO^T, dS^T, dV += P^T dO, dK += dS^T Q
//    over the query tiles that see it.
// That is 7 tile products where an atomic dQ would need 5: the price of
// determinism, paid on the tensor cores. Design: docs/attention.md.
#include <cmath>
#include <initializer_list>

#include "attention.cuh"
#include "attention_tc_launch.cuh"

namespace dtrain::cuda {
namespace tc {
namespace {

namespace at = attention_tiles;

constexpr int kTileCols = at::kKeyTile / 8;  // 8-column C tiles across a 64-wide score tile
static_assert(at::kQueryTile == at::kKeyTile, "the two passes share the score-tile shape");

// Adds scale * acc (16 rows x D per warp; rows[2] are this lane's) into dst rows of `stride`.
template <typename T, int D>
__device__ __forceinline__ void add_rows(T* dst, int64_t stride, const int64_t (&rows)[2], int64_t T_len,
                                         const float (&acc)[D / 8][4], float scale, int t) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (rows[r] >= T_len) continue;
    T* p = dst + rows[r] * stride + 2 * t;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) add_pair<T>(p + n * 8, acc[n][2 * r], acc[n][2 * r + 1], scale);
  }
}

template <typename T, int D, at::Mask M>
__global__ void __launch_bounds__(kThreads)
    tc_backward_dq_kernel(T* dqkv, const T* dout, const T* qkv, const float* lse, const float* row_dot, TcDims d,
                          float scale) {
  constexpr int LD = row_stride<D>();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Qs = reinterpret_cast<T*>(smem_raw);  // [kQueryTile][LD]
  T* dOs = Qs + at::kQueryTile * LD;       // [kQueryTile][LD]
  T* Ks = dOs + at::kQueryTile * LD;       // [kKeyTile][LD]
  T* Vs = Ks + at::kKeyTile * LD;          // [kKeyTile][LD]
  const auto [warp, lane, g, t] = lane_coords();
  const int64_t qt = M == at::Mask::causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
  const BlockHead bh = block_head(d, D);
  const int64_t stride = 3 * d.C;
  const T* base = qkv + bh.qkv_off;
  const T* dout_base = dout + bh.out_off;
  const at::TileRange q = at::tile_range(d.T, at::kQueryTile, qt);
  stage_rows<T, D>(Qs, base + q.begin * stride, stride, q.end - q.begin, at::kQueryTile);
  stage_rows<T, D>(dOs, dout_base + q.begin * d.C, d.C, q.end - q.begin, at::kQueryTile);
  const int64_t rows[2] = {q.begin + warp * 16 + g, q.begin + warp * 16 + g + 8};
  float row_lse[2], row_d[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_lse[r] = rows[r] < d.T ? lse[bh.bh * d.T + rows[r]] : 0.0f;
    row_d[r] = rows[r] < d.T ? row_dot[bh.bh * d.T + rows[r]] : 0.0f;
  }
  float dq[D / 8][4];
  zero_accum<D>(dq);

  const int64_t kt_end = at::key_tile_end(q, d.T, M);
  for (int64_t kt = 0; kt < kt_end; ++kt) {
    const at::TileRange k = at::tile_range(d.T, at::kKeyTile, kt);
    const at::TileKind kind = at::classify(q, k, M);
    if (kind == at::TileKind::skip) continue;
    __syncthreads();
    stage_rows<T, D>(Ks, base + k.begin * stride + d.C, stride, k.end - k.begin, at::kKeyTile);
    stage_rows<T, D>(Vs, base + k.begin * stride + 2 * d.C, stride, k.end - k.begin, at::kKeyTile);
    __syncthreads();
    float s[kTileCols][4], dp[kTileCols][4];
    warp_scores<T, D, at::kKeyTile>(s, Qs, Ks, warp * 16, lane);
    warp_scores<T, D, at::kKeyTile>(dp, dOs, Vs, warp * 16, lane);
#pragma unroll
    for (int n = 0; n < kTileCols; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = k.begin + n * 8 + 2 * t + (e & 1);
        const bool vis = kind == at::TileKind::dense || at::visible(rows[e >> 1], key, d.T, M);
        const float p = at::recomputed_prob(s[n][e] * scale, row_lse[e >> 1], vis);
        s[n][e] = at::score_grad(p, dp[n][e], row_d[e >> 1]);  // dS
      }
    }
    warp_accumulate<T, D, at::kKeyTile>(dq, s, Ks, lane);
  }
  add_rows<T, D>(dqkv + bh.qkv_off, stride, rows, d.T, dq, scale, t);
}

template <typename T, int D, at::Mask M>
__global__ void __launch_bounds__(kThreads)
    tc_backward_dkv_kernel(T* dqkv, const T* dout, const T* qkv, const float* lse, const float* row_dot, TcDims d,
                           float scale) {
  constexpr int LD = row_stride<D>();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Ks = reinterpret_cast<T*>(smem_raw);                              // [kKeyTile][LD]
  T* Vs = Ks + at::kKeyTile * LD;                                      // [kKeyTile][LD]
  T* Qs = Vs + at::kKeyTile * LD;                                      // [kQueryTile][LD]
  T* dOs = Qs + at::kQueryTile * LD;                                   // [kQueryTile][LD]
  float* lse_s = reinterpret_cast<float*>(dOs + at::kQueryTile * LD);  // [kQueryTile]
  float* dot_s = lse_s + at::kQueryTile;                               // [kQueryTile]
  const auto [warp, lane, g, t] = lane_coords();
  const int64_t kt = blockIdx.x;  // causal: the first key tiles are seen by the most queries, and run first
  const BlockHead bh = block_head(d, D);
  const int64_t stride = 3 * d.C;
  const T* base = qkv + bh.qkv_off;
  const T* dout_base = dout + bh.out_off;
  const at::TileRange k = at::tile_range(d.T, at::kKeyTile, kt);
  stage_rows<T, D>(Ks, base + k.begin * stride + d.C, stride, k.end - k.begin, at::kKeyTile);
  stage_rows<T, D>(Vs, base + k.begin * stride + 2 * d.C, stride, k.end - k.begin, at::kKeyTile);
  const int64_t keys[2] = {k.begin + warp * 16 + g, k.begin + warp * 16 + g + 8};
  float dk[D / 8][4], dv[D / 8][4];
  zero_accum<D>(dk);
  zero_accum<D>(dv);

  const int64_t qt_end = at::tile_count(d.T, at::kQueryTile);
  for (int64_t qt = at::query_tile_begin(k, M); qt < qt_end; ++qt) {
    const at::TileRange q = at::tile_range(d.T, at::kQueryTile, qt);
    const at::TileKind kind = at::classify(q, k, M);
    if (kind == at::TileKind::skip) continue;
    __syncthreads();
    stage_rows<T, D>(Qs, base + q.begin * stride, stride, q.end - q.begin, at::kQueryTile);
    stage_rows<T, D>(dOs, dout_base + q.begin * d.C, d.C, q.end - q.begin, at::kQueryTile);
    stage_floats(lse_s, lse + bh.bh * d.T + q.begin, q.end - q.begin, at::kQueryTile);
    stage_floats(dot_s, row_dot + bh.bh * d.T + q.begin, q.end - q.begin, at::kQueryTile);
    __syncthreads();
    float st[kTileCols][4], dpt[kTileCols][4];  // transposed: row = key, column = query
    warp_scores<T, D, at::kKeyTile>(st, Ks, Qs, warp * 16, lane);
    warp_scores<T, D, at::kKeyTile>(dpt, Vs, dOs, warp * 16, lane);
#pragma unroll
    for (int n = 0; n < kTileCols; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = n * 8 + 2 * t + (e & 1);
        const bool vis = kind == at::TileKind::dense || at::visible(q.begin + col, keys[e >> 1], d.T, M);
        const float p = at::recomputed_prob(st[n][e] * scale, lse_s[col], vis);
        dpt[n][e] = at::score_grad(p, dpt[n][e], dot_s[col]);  // dS^T
        st[n][e] = p;                                          // P^T
      }
    }
    warp_accumulate<T, D, at::kKeyTile>(dv, st, dOs, lane);
    warp_accumulate<T, D, at::kKeyTile>(dk, dpt, Qs, lane);
  }
  T* dst = dqkv + bh.qkv_off;
  add_rows<T, D>(dst + d.C, stride, keys, d.T, dk, scale, t);
  add_rows<T, D>(dst + 2 * d.C, stride, keys, d.T, dv, 1.0f, t);
}

}  // namespace
}  // namespace tc

void attention_backward_tc(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                           int64_t num_heads, bool causal) {
  namespace at = attention_tiles;
  const OpContext ctx(dout);
  require_same_dtype("attention_backward", qkv.dtype(), {&dout, &out, &dqkv});
  for (const Tensor* t : std::initializer_list<const Tensor*>{&dqkv, &dout, &qkv}) {
    DTRAIN_CHECK(reinterpret_cast<uintptr_t>(t->data_ptr()) % 16 == 0,
                 "tensor-core attention backward needs 16-byte aligned dqkv, dout and qkv; got ", t->describe(),
                 "; use DTRAIN_ATTENTION=matmul for views");
  }
  const tc::TcDims d = tc::tc_dims(qkv, num_heads);
  const int64_t B = qkv.size(0), hs = d.C / num_heads;
  if (B == 0 || d.T == 0) return;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  Tensor row_dot = ctx.scratch({B * num_heads * d.T});
  attention_row_dot(ctx, ptr<float>(row_dot), dout, out, num_heads);
  const dim3 q_grid = tc::tc_grid(d.T, at::kQueryTile, B * num_heads);
  const dim3 k_grid = tc::tc_grid(d.T, at::kKeyTile, B * num_heads);
  tc::dispatch_tc(qkv.dtype(), hs, causal, [&](auto tag, auto dim, auto mask) {
    using T = decltype(tag);
    constexpr int D = decltype(dim)::value;
    constexpr at::Mask M = decltype(mask)::value;
    const size_t tiles = (2 * at::kQueryTile + 2 * at::kKeyTile) * static_cast<size_t>(tc::row_stride<D>()) * sizeof(T);
    const auto dq_kernel = tc::tc_backward_dq_kernel<T, D, M>;
    tc::allow_smem(dq_kernel, tiles);
    dq_kernel<<<q_grid, tc::kThreads, tiles, ctx.stream()>>>(ptr<T>(dqkv), ptr<T>(dout), ptr<T>(qkv), ptr<float>(lse),
                                                             ptr<float>(row_dot), d, scale);
    DTRAIN_LAUNCH_CHECK();
    const size_t dkv_smem = tiles + 2 * at::kQueryTile * sizeof(float);
    const auto dkv_kernel = tc::tc_backward_dkv_kernel<T, D, M>;
    tc::allow_smem(dkv_kernel, dkv_smem);
    dkv_kernel<<<k_grid, tc::kThreads, dkv_smem, ctx.stream()>>>(ptr<T>(dqkv), ptr<T>(dout), ptr<T>(qkv),
                                                                 ptr<float>(lse), ptr<float>(row_dot), d, scale);
    DTRAIN_LAUNCH_CHECK();
  });
}

}  // namespace dtrain::cuda
