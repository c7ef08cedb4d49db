// The tensor-core flash attention's forward kernel (launched by
// attention_tc_forward.cu; also compiled for the host by the CPU emulation).
//
// A block of 8 warps owns a query tile of 128 rows of one (batch, head); warp
// w owns rows 16w..16w+15, one mma M. (128 rows, not 64: each K, V tile
// staged from L2 then feeds twice the tensor work, halving that traffic.) Per key tile of 64 rows staged in
// shared memory (K and V, zero-filled past T):
//   S = Q K^T        (16 x 64 per warp, f32 in registers: 8 C tiles)
//   scale, mask (partial tiles only), row max over the quad of lanes,
//   rescale the running sum and O, P = exp(S - max)
//   O += P V         (P's C fragments reused as A fragments, 16-bit)
// and at the end O / sum and lse = max + log(sum). Causal blocks run longest
// first (the last query tile sees every key tile).
#pragma once

#include "attention_tc_mma.cuh"
#include "attention_tiles.cuh"

namespace dtrain::cuda::tc {

// Dynamic shared memory of the forward kernel: the Q tile and two buffers of K and V tiles.
template <typename T, int D>
constexpr size_t forward_smem_bytes() {
  return (attention_tiles::kForwardQueryTile + 4 * attention_tiles::kKeyTile) * static_cast<size_t>(row_stride<D>()) *
         sizeof(T);
}

namespace at = attention_tiles;

template <typename T, int D, attention_tiles::Mask M>
DTRAIN_TC_KERNEL(kForwardThreads)
tc_forward_kernel(T* out, float* lse, const T* qkv, TcDims d, float scale) {
  constexpr int LD = row_stride<D>();
  DTRAIN_TC_SHARED_BYTES(smem_raw);
  T* Qs = reinterpret_cast<T*>(smem_raw);         // [kForwardQueryTile][LD]
  T* const kv = Qs + at::kForwardQueryTile * LD;  // buffer b: K at kv + 2b tiles, V at kv + (2b + 1) tiles
  const auto [warp, lane, g, t] = lane_coords();
  const int64_t qt = M == attention_tiles::Mask::causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
  const BlockHead bh = block_head(d, D);
  const int64_t stride = 3 * d.C;
  const T* base = qkv + bh.qkv_off;  // q at +0, k at +C, v at +2C
  const at::TileRange q = at::tile_range(d.T, at::kForwardQueryTile, qt);
  stage_rows<T, D>(Qs, base + q.begin * stride, stride, q.end - q.begin, at::kForwardQueryTile);

  const int r_local = warp * 16 + g;  // this lane's rows: r_local and r_local + 8
  const int64_t rows[2] = {q.begin + r_local, q.begin + r_local + 8};
  float o[D / 8][4];
  zero_accum<D>(o);
  at::RowSoftmax rs[2] = {at::row_softmax_start(), at::row_softmax_start()};

  // K and V tiles are double-buffered: tile kt + 1 is copied (cp.async)
  // while tile kt is computed. No tile below key_tile_end is skipped
  // (test_attention_tiles checks it), so the pipeline has no holes.
  constexpr int kTileElems = at::kKeyTile * LD;
  const int64_t kt_end = at::key_tile_end(q, d.T, M);
  prefetch_kv<T, D>(kv, base, stride, d.C, d.T, 0);
  for (int64_t kt = 0; kt < kt_end; ++kt) {
    const at::TileRange k = at::tile_range(d.T, at::kKeyTile, kt);
    const at::TileKind kind = at::classify(q, k, M, at::kForwardQueryTile);
    // Tile kt has landed for every thread after this (and Q, the first time).
    pipeline_step(kt + 1 < kt_end, [&] { prefetch_kv<T, D>(kv, base, stride, d.C, d.T, kt + 1); });
    const T* Ks = kv + 2 * (kt & 1) * kTileElems;
    const T* Vs = Ks + kTileElems;

    float s[at::kKeyTile / 8][4];
    warp_scores<T, D, at::kKeyTile>(s, Qs, Ks, warp * 16, lane);

    float tile_max[2] = {at::neg_inf(), at::neg_inf()};
    DTRAIN_TC_UNROLL
    for (int n = 0; n < at::kKeyTile / 8; ++n) {
      DTRAIN_TC_UNROLL
      for (int e = 0; e < 4; ++e) {
        const int64_t key = k.begin + n * 8 + 2 * t + (e & 1);
        float v = s[n][e] * scale;
        if (kind == at::TileKind::partial && !at::visible(rows[e >> 1], key, d.T, M)) v = at::neg_inf();
        s[n][e] = v;
        tile_max[e >> 1] = fmaxf(tile_max[e >> 1], v);
      }
    }
    float factor[2];
    DTRAIN_TC_UNROLL
    for (int r = 0; r < 2; ++r) factor[r] = at::row_softmax_enter_tile(rs[r], quad_max(tile_max[r]));
    DTRAIN_TC_UNROLL
    for (int n = 0; n < D / 8; ++n) {
      o[n][0] *= factor[0];
      o[n][1] *= factor[0];
      o[n][2] *= factor[1];
      o[n][3] *= factor[1];
    }
    DTRAIN_TC_UNROLL
    for (int n = 0; n < at::kKeyTile / 8; ++n) {
      DTRAIN_TC_UNROLL
      for (int e = 0; e < 4; ++e) {
        s[n][e] = at::row_softmax_prob(rs[e >> 1], s[n][e]);
        rs[e >> 1].sum += s[n][e];  // this lane's columns; the quad is summed at the end
      }
    }

    warp_accumulate<T, D, at::kKeyTile>(o, s, Vs, lane);
    __syncthreads();  // every warp is done with this buffer before it is refilled
  }

  DTRAIN_TC_UNROLL
  for (int r = 0; r < 2; ++r) {
    const float sum = quad_sum(rs[r].sum);
    const int64_t row = rows[r];
    if (row >= d.T) continue;
    const float inv = at::row_softmax_inv_sum(sum);
    T* dst = out + bh.out_off + row * d.C + 2 * t;
    DTRAIN_TC_UNROLL
    for (int n = 0; n < D / 8; ++n) {
      store_u32(dst + n * 8, pack2<T>(o[n][2 * r] * inv, o[n][2 * r + 1] * inv));
    }
    if (t == 0) lse[bh.bh * d.T + row] = at::row_softmax_lse(rs[r].max, sum);
  }
}

}  // namespace dtrain::cuda::tc
