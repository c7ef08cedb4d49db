// The tile logic of the tensor-core flash attention (attention_tc.cu), shared
// by the CUDA kernels and by a CPU emulation (tests/ops/test_attention_tiles.cpp)
// that runs complete forward and backward passes through these same functions
// and compares them with the CPU reference. Nothing here touches tensor cores
// or fragments: it is the part of the kernels that a host compiler can check.
//
//  - Tiles: T is cut into query tiles (kForwardQueryTile rows in the
//    forward, kQueryTile in the backward) and key tiles of kKeyTile rows; the
//    last tile of each is ragged when T is not a multiple.
//  - Masks: causal (key j visible to query i when j <= i) or full. A pair of
//    tiles is skipped (no visible pair), dense (every pair visible, no
//    per-element test) or partial (ragged, or crossed by the causal diagonal).
//  - Forward: an online softmax per query row; each key tile raises the
//    running max, rescales what was accumulated, and adds its probabilities.
//    Only lse = max + log(sum) is saved.
//  - Backward: probabilities are recomputed from lse, P = exp(s - lse), and
//    dS = P (dP - D) with D = dout . out per query row. Two passes, each
//    output written by one block (deterministic, no atomics): a query-tile
//    pass visits the key tiles a query tile sees (dQ), a key-tile pass
//    visits the query tiles that see a key tile (dK, dV).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define DTRAIN_TILE_FN __host__ __device__ __forceinline__
#else
#include <cmath>
#define DTRAIN_TILE_FN inline
#endif

namespace dtrain::attention_tiles {

constexpr int kForwardQueryTile = 128;  // forward: 8 warps of 16 rows (one mma M each)
constexpr int kQueryTile = 64;          // backward: 4 warps of 16 rows
constexpr int kKeyTile = 64;            // key rows per staged shared-memory tile

enum class Mask { causal, full };
enum class TileKind { skip, partial, dense };

// Rows [begin, end) of one tile.
struct TileRange {
  int64_t begin;
  int64_t end;
};

DTRAIN_TILE_FN float tile_exp(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return std::exp(x);
#endif
}

DTRAIN_TILE_FN float tile_log(float x) {
#if defined(__CUDA_ARCH__)
  return logf(x);
#else
  return std::log(x);
#endif
}

DTRAIN_TILE_FN float neg_inf() {
  return -__builtin_huge_valf();
}

DTRAIN_TILE_FN int64_t tile_count(int64_t len, int tile) {
  return (len + tile - 1) / tile;
}

// Tile `index` of a sequence of `len` rows; the last one may be short.
DTRAIN_TILE_FN TileRange tile_range(int64_t len, int tile, int64_t index) {
  const int64_t begin = index * tile;
  const int64_t end = begin + tile < len ? begin + tile : len;
  return {begin, end};
}

// May query i see key j? Rows past the sequence see nothing and are seen by nothing.
DTRAIN_TILE_FN bool visible(int64_t i, int64_t j, int64_t len, Mask mask) {
  return i < len && j < len && (mask == Mask::full || j <= i);
}

// Key tiles a query tile visits, [0, key_tile_end): causal stops at the tile
// holding the query tile's last row.
DTRAIN_TILE_FN int64_t key_tile_end(TileRange q, int64_t len, Mask mask) {
  return mask == Mask::causal ? tile_count(q.end, kKeyTile) : tile_count(len, kKeyTile);
}

// Query tiles that see a key tile, [query_tile_begin, tile_count(len, kQueryTile)):
// causal starts at the query tile holding the key tile's first row.
DTRAIN_TILE_FN int64_t query_tile_begin(TileRange k, Mask mask) {
  return mask == Mask::causal ? k.begin / kQueryTile : 0;
}

// Whether the kernels may skip a pair of tiles, compute it without masks, or
// must test every element. A tile shorter than its size (q_tile, kKeyTile) is
// partial, since its missing rows are zero-filled in shared memory and must
// not count.
DTRAIN_TILE_FN TileKind classify(TileRange q, TileRange k, Mask mask, int q_tile = kQueryTile) {
  if (q.end <= q.begin || k.end <= k.begin) return TileKind::skip;
  if (mask == Mask::causal && k.begin > q.end - 1) return TileKind::skip;
  const bool ragged = q.end - q.begin < q_tile || k.end - k.begin < kKeyTile;
  const bool crosses_diagonal = mask == Mask::causal && k.end - 1 > q.begin;
  return ragged || crosses_diagonal ? TileKind::partial : TileKind::dense;
}

// Running max and sum of exp(s - max) of one query row (the online softmax).
// On the GPU each of the 4 lanes holding a row keeps the sum of its own
// columns under the row's common max; they are added at the end.
struct RowSoftmax {
  float max;
  float sum;
};

DTRAIN_TILE_FN RowSoftmax row_softmax_start() {
  return {neg_inf(), 0.0f};
}

// Enters a key tile whose largest (scaled, masked) score in this row is
// tile_max. Returns the factor by which everything accumulated so far (sum
// and output) must be multiplied; the sum is already rescaled. A row that has
// seen no visible key yet keeps max = -inf and factor 1.
DTRAIN_TILE_FN float row_softmax_enter_tile(RowSoftmax& r, float tile_max) {
  const float new_max = tile_max > r.max ? tile_max : r.max;
  if (new_max == neg_inf()) return 1.0f;
  const float factor = tile_exp(r.max - new_max);  // exp(-inf) = 0 for a row's first visible tile
  r.sum *= factor;
  r.max = new_max;
  return factor;
}

// The unnormalised probability of one scaled score under the running max;
// masked scores are -inf and give 0.
DTRAIN_TILE_FN float row_softmax_prob(const RowSoftmax& r, float score) {
  return score == neg_inf() ? 0.0f : tile_exp(score - r.max);
}

// 1 / sum, or 0 for a row that saw no key (its output is then 0).
DTRAIN_TILE_FN float row_softmax_inv_sum(float sum) {
  return sum > 0.0f ? 1.0f / sum : 0.0f;
}

// log-sum-exp of the row's scores (-inf for a row that saw no key).
DTRAIN_TILE_FN float row_softmax_lse(float max, float sum) {
  return sum > 0.0f ? max + tile_log(sum) : neg_inf();
}

// Backward: the probability rebuilt from the saved lse (0 where masked).
DTRAIN_TILE_FN float recomputed_prob(float scaled_score, float lse, bool is_visible) {
  return is_visible ? tile_exp(scaled_score - lse) : 0.0f;
}

// Backward: dS = P (dP - D), the gradient of the (scaled) score.
DTRAIN_TILE_FN float score_grad(float prob, float dprob, float row_dot) {
  return prob * (dprob - row_dot);
}

}  // namespace dtrain::attention_tiles
