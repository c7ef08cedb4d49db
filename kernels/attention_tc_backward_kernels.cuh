// The tensor-core flash attention's backward kernels (launched by
// attention_tc_backward.cu; also compiled for the host by the CPU emulation).
// What they compute, and why two passes: attention_tc_backward.cu.
#pragma once

#include "attention_tc_mma.cuh"
#include "attention_tiles.cuh"

namespace dtrain::cuda::tc {

namespace at = attention_tiles;

// Dynamic shared memory of the query pass (Q, dO, and two buffers of K, V
// tiles) and of the key pass (K, V, and two buffers of Q, dO tiles with lse
// and D of their rows). The streamed tiles are double-buffered: tile i + 1 is
// copied by cp.async while tile i is computed. No tile inside either loop is
// ever skipped (test_attention_tiles checks it), so the pipelines have no holes.
template <typename T, int D>
constexpr size_t backward_dq_smem_bytes() {
  return (2 * at::kQueryTile + 4 * at::kKeyTile) * static_cast<size_t>(row_stride<D>()) * sizeof(T);
}
template <typename T, int D>
constexpr size_t backward_dkv_smem_bytes() {
  return backward_dq_smem_bytes<T, D>() + 4 * at::kQueryTile * sizeof(float);
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
  constexpr int kTileElems = at::kKeyTile * LD;
  T* Qs = reinterpret_cast<T*>(smem_raw);   // [kQueryTile][LD]
  T* dOs = Qs + at::kQueryTile * LD;        // [kQueryTile][LD]
  T* const kv = dOs + at::kQueryTile * LD;  // buffer b: K at kv + 2b tiles, V at kv + (2b + 1) tiles
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
  prefetch_kv<T, D>(kv, base, stride, d.C, d.T, 0);
  for (int64_t kt = 0; kt < kt_end; ++kt) {
    const at::TileRange k = at::tile_range(d.T, at::kKeyTile, kt);
    const at::TileKind kind = at::classify(q, k, M);
    // Tile kt has landed for every thread after this (and Q, dO, the first time).
    pipeline_step(kt + 1 < kt_end, [&] { prefetch_kv<T, D>(kv, base, stride, d.C, d.T, kt + 1); });
    const T* Ks = kv + 2 * (kt & 1) * kTileElems;
    const T* Vs = Ks + kTileElems;
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
    __syncthreads();  // every warp is done with this buffer before it is refilled
  }
  add_rows<T, D>(dqkv + bh.qkv_off, stride, rows, d.T, dq, scale, t);
}

template <typename T, int D, at::Mask M>
DTRAIN_TC_KERNEL(kThreads)
tc_backward_dkv_kernel(T* dqkv, const T* dout, const T* qkv, const float* lse, const float* row_dot, TcDims d,
                       float scale) {
  constexpr int LD = row_stride<D>();
  DTRAIN_TC_SHARED_BYTES(smem_raw);
  constexpr int kTileElems = at::kQueryTile * LD;
  T* Ks = reinterpret_cast<T*>(smem_raw);  // [kKeyTile][LD]
  T* Vs = Ks + at::kKeyTile * LD;          // [kKeyTile][LD]
  T* const qdo = Vs + at::kKeyTile * LD;   // buffer b: Q at qdo + 2b tiles, dO at qdo + (2b + 1) tiles
  float* const stats = reinterpret_cast<float*>(qdo + 4 * kTileElems);  // buffer b: lse, D at + 2b, 2b + 1 rows
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

  const int64_t qt_begin = at::query_tile_begin(k, M), qt_end = at::tile_count(d.T, at::kQueryTile);
  auto prefetch = [&](int64_t qt) {
    const at::TileRange q = at::tile_range(d.T, at::kQueryTile, qt);
    const int64_t b = (qt - qt_begin) & 1;
    T* buf = qdo + 2 * b * kTileElems;
    stage_rows_async<T, D>(buf, base + q.begin * stride, stride, q.end - q.begin, at::kQueryTile);
    stage_rows_async<T, D>(buf + kTileElems, dout_base + q.begin * d.C, d.C, q.end - q.begin, at::kQueryTile);
    cp_async_commit();
    // lse and D rows are not 16-byte aligned; plain stores, seen after the next barrier.
    float* st = stats + 2 * b * at::kQueryTile;
    stage_floats(st, lse + bh.bh * d.T + q.begin, q.end - q.begin, at::kQueryTile);
    stage_floats(st + at::kQueryTile, row_dot + bh.bh * d.T + q.begin, q.end - q.begin, at::kQueryTile);
  };
  if (qt_begin < qt_end) prefetch(qt_begin);
  for (int64_t qt = qt_begin; qt < qt_end; ++qt) {
    const at::TileRange q = at::tile_range(d.T, at::kQueryTile, qt);
    const at::TileKind kind = at::classify(q, k, M);
    // Tile qt has landed for every thread after this (and K, V, the first time).
    pipeline_step(qt + 1 < qt_end, [&] { prefetch(qt + 1); });
    const int64_t b = (qt - qt_begin) & 1;
    const T* Qs = qdo + 2 * b * kTileElems;
    const T* dOs = Qs + kTileElems;
    const float* lse_s = stats + 2 * b * at::kQueryTile;
    const float* dot_s = lse_s + at::kQueryTile;
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
    __syncthreads();  // every warp is done with this buffer before it is refilled
  }
  T* dst = dqkv + bh.qkv_off;
  add_rows<T, D>(dst + d.C, stride, keys, d.T, dk, scale, t);
  add_rows<T, D>(dst + 2 * d.C, stride, keys, d.T, dv, 1.0f, t);
}

}  // namespace dtrain::cuda::tc
