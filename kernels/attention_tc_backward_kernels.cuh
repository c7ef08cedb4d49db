// The tensor-core flash attention's backward kernels (launched by
// attention_tc_backward.cu; also compiled for the host by the CPU emulation).
// What they compute, and why two passes: attention_tc_backward.cu.
#pragma once

#include "attention_tc_mma.cuh"
#include "attention_tiles.cuh"

namespace dtrain::cuda::tc {

namespace at = attention_tiles;

// Dynamic shared memory of the query pass (Q, dO, K, V tiles) and of the key
// pass (the same tiles, and lse and D of the query tile).
template <typename T, int D>
constexpr size_t backward_dq_smem_bytes() {
  return (2 * at::kQueryTile + 2 * at::kKeyTile) * static_cast<size_t>(row_stride<D>()) * sizeof(T);
}
template <typename T, int D>
constexpr size_t backward_dkv_smem_bytes() {
  return backward_dq_smem_bytes<T, D>() + 2 * at::kQueryTile * sizeof(float);
}

constexpr int kTileCols = at::kKeyTile / 8;  // 8-column C tiles across a 64-wide score tile
static_assert(at::kQueryTile == at::kKeyTile, "the two passes share the score-tile shape");

// Adds scale * acc (16 rows x D per warp; rows[2] are this lane's) into dst rows of `stride`.
template <typename T, int D>
DTRAIN_TC_FN void add_rows(T* dst, int64_t stride, const int64_t (&rows)[2], int64_t T_len,
                           const float (&acc)[D / 8][4], float scale, int t) {
  DTRAIN_TC_UNROLL
  for (int r = 0; r < 2; ++r) {
    if (rows[r] >= T_len) continue;
    T* p = dst + rows[r] * stride + 2 * t;
    DTRAIN_TC_UNROLL
    for (int n = 0; n < D / 8; ++n) add_pair<T>(p + n * 8, acc[n][2 * r], acc[n][2 * r + 1], scale);
  }
}

template <typename T, int D, at::Mask M>
DTRAIN_TC_KERNEL(kThreads)
tc_backward_dq_kernel(T* dqkv, const T* dout, const T* qkv, const float* lse, const float* row_dot, TcDims d,
                      float scale) {
  constexpr int LD = row_stride<D>();
  DTRAIN_TC_SHARED_BYTES(smem_raw);
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
  DTRAIN_TC_UNROLL
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
    DTRAIN_TC_UNROLL
    for (int n = 0; n < kTileCols; ++n) {
      DTRAIN_TC_UNROLL
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
DTRAIN_TC_KERNEL(kThreads)
tc_backward_dkv_kernel(T* dqkv, const T* dout, const T* qkv, const float* lse, const float* row_dot, TcDims d,
                       float scale) {
  constexpr int LD = row_stride<D>();
  DTRAIN_TC_SHARED_BYTES(smem_raw);
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
    DTRAIN_TC_UNROLL
    for (int n = 0; n < kTileCols; ++n) {
      DTRAIN_TC_UNROLL
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

}  // namespace dtrain::cuda::tc
