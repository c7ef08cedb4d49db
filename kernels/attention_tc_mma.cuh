// Warp-level building blocks of the tensor-core attention kernels
// (attention_tc_forward.cu, attention_tc_backward.cu): the m16n8k16 mma.sync
// for bf16 and f16 with f32 accumulators, loading its fragments from
// shared-memory tiles, and staging tiles of rows from global memory.
//
// Why inline PTX mma.sync and not WMMA: the softmax works on the scores in
// registers, so the kernels must know which thread holds which element of an
// accumulator. PTX documents the m16n8k16 layout (WMMA leaves it opaque), and
// with it the f32 accumulators of S = Q K^T become, packed to 16 bits, the A
// operand of O = P V without a trip through shared memory. mma.sync runs on
// sm_80 and sm_90 alike (sm_90's wgmma is faster and is a later version).
//
// Fragment layout of mma.m16n8k16 (lane = 4 g + t, g in 0..7, t in 0..3):
//   A 16x16 (row-major): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
//   B 16x8 (k x n):      b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g)
//   C 16x8 (f32):        c0 c1 (g, 2t..2t+1), c2 c3 (g+8, 2t..2t+1)
// Two adjacent 8-column C tiles are exactly one 16-column A tile.
//
// Shared-memory tiles are row-major with a row stride of D + 8 elements: the
// 16-byte pad moves consecutive rows 4 banks apart, so the 8 rows x 4 columns
// that one fragment load touches fall in 32 different banks.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace dtrain::cuda::tc {

constexpr int kWarps = 4;  // per block; each owns 16 rows of the block's tile
constexpr int kThreads = kWarps * 32;
constexpr int kPad = 8;  // elements of padding per shared-memory row

template <int D>
constexpr int row_stride() {
  return D + kPad;
}

// D += A B on one m16n8k16 tile.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);

template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4],
                                                         const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <>
__device__ __forceinline__ void mma_16816<__half>(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Two floats rounded to T, lo in the low half (the lower column or k index).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);

template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Two 16-bit elements from different rows, lo in the low half.
template <typename T>
__device__ __forceinline__ uint32_t pack_raw(T lo, T hi) {
  const uint32_t l = *reinterpret_cast<const uint16_t*>(&lo);
  const uint32_t h = *reinterpret_cast<const uint16_t*>(&hi);
  return l | (h << 16);
}

template <typename T>
__device__ __forceinline__ uint32_t load_pair(const T* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// A fragment of rows [r0, r0+16) and columns [k0, k0+16) of a row-major tile.
template <typename T, int LD>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const T* tile, int r0, int k0, int lane) {
  const int g = lane / 4, t = lane % 4;
  const T* p = tile + (r0 + g) * LD + k0 + 2 * t;
  a[0] = load_pair(p);
  a[1] = load_pair(p + 8 * LD);
  a[2] = load_pair(p + 8);
  a[3] = load_pair(p + 8 * LD + 8);
}

// B fragment (k [k0, k0+16), n [n0, n0+8)) of a tile stored n-major, i.e.
// B[k][n] = tile[n][k]: K for S = Q K^T, V for dP = dO V^T, Q and dO for the
// transposed scores of the key pass.
template <typename T, int LD>
__device__ __forceinline__ void load_b_nmajor(uint32_t (&b)[2], const T* tile, int n0, int k0, int lane) {
  const int g = lane / 4, t = lane % 4;
  const T* p = tile + (n0 + g) * LD + k0 + 2 * t;
  b[0] = load_pair(p);
  b[1] = load_pair(p + 8);
}

// B fragment of a tile stored k-major, B[k][n] = tile[k][n]: V for O = P V,
// K for dQ = dS K, dO and Q for dV and dK. The two elements of a register
// come from consecutive rows, so they are read one by one.
template <typename T, int LD>
__device__ __forceinline__ void load_b_kmajor(uint32_t (&b)[2], const T* tile, int n0, int k0, int lane) {
  const int g = lane / 4, t = lane % 4;
  const T* p = tile + (k0 + 2 * t) * LD + n0 + g;
  b[0] = pack_raw(p[0], p[LD]);
  b[1] = pack_raw(p[8 * LD], p[9 * LD]);
}

// C fragments of 16 rows x 16 columns (two 8-column tiles c[j], c[j+1]) as
// the A fragment of the next product (P of O = P V, dS of dQ = dS K).
template <typename T>
__device__ __forceinline__ void accum_to_a(uint32_t (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
  a[0] = pack2<T>(lo[0], lo[1]);
  a[1] = pack2<T>(lo[2], lo[3]);
  a[2] = pack2<T>(hi[0], hi[1]);
  a[3] = pack2<T>(hi[2], hi[3]);
}

// Where a thread sits: its warp, its lane, and the lane's row group g and column pair t.
struct LaneCoords {
  int warp, lane, g, t;
};
__device__ __forceinline__ LaneCoords lane_coords() {
  const int lane = static_cast<int>(threadIdx.x % 32);
  return {static_cast<int>(threadIdx.x / 32), lane, lane / 4, lane % 4};
}

// A warp's 16 x N product over D: acc[n] = rows [r0, r0+16) of the row-major
// a_tile times the n-major b_tile's rows [8n, 8n+8) (S = Q K^T and its kin).
template <typename T, int D, int N>
__device__ __forceinline__ void warp_scores(float (&acc)[N / 8][4], const T* a_tile, const T* b_tile, int r0,
                                            int lane) {
  constexpr int LD = row_stride<D>();
#pragma unroll
  for (int n = 0; n < N / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < D; kk += 16) {
    uint32_t a[4];
    load_a<T, LD>(a, a_tile, r0, kk, lane);
#pragma unroll
    for (int n = 0; n < N / 8; ++n) {
      uint32_t bf[2];
      load_b_nmajor<T, LD>(bf, b_tile, n * 8, kk, lane);
      mma_16816<T>(acc[n], a, bf);
    }
  }
}

// A warp's out (16 x D) += lhs (16 x K, C fragments, rounded to T) times the
// k-major b_tile (K x D): O += P V and its kin.
template <typename T, int D, int K>
__device__ __forceinline__ void warp_accumulate(float (&out)[D / 8][4], const float (&lhs)[K / 8][4], const T* b_tile,
                                                int lane) {
  constexpr int LD = row_stride<D>();
#pragma unroll
  for (int j = 0; j < K / 16; ++j) {
    uint32_t a[4];
    accum_to_a<T>(a, lhs[2 * j], lhs[2 * j + 1]);
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      uint32_t bf[2];
      load_b_kmajor<T, LD>(bf, b_tile, n * 8, j * 16, lane);
      mma_16816<T>(out[n], a, bf);
    }
  }
}

template <int N>
__device__ __forceinline__ void zero_accum(float (&acc)[N / 8][4]) {
#pragma unroll
  for (int n = 0; n < N / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

// The max / sum over the 4 lanes that hold one row of a C fragment.
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Copies `rows` rows of D elements (global row stride src_stride, 16-byte
// aligned) into a tile of `tile_rows` rows, zero-filling rows >= valid.
// All threads of the block take part; the caller synchronises.
template <typename T, int D>
__device__ __forceinline__ void stage_rows(T* tile, const T* src, int64_t src_stride, int64_t valid, int tile_rows) {
  constexpr int kChunks = D * static_cast<int>(sizeof(T)) / 16;  // 16-byte chunks per row
  constexpr int kPerChunk = 16 / static_cast<int>(sizeof(T));
  for (int idx = threadIdx.x; idx < tile_rows * kChunks; idx += blockDim.x) {
    const int r = idx / kChunks, c = idx % kChunks;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r < valid) v = *reinterpret_cast<const uint4*>(src + r * src_stride + c * kPerChunk);
    *reinterpret_cast<uint4*>(tile + r * row_stride<D>() + c * kPerChunk) = v;
  }
}

// Copies `valid` floats of a row vector into a tile of `n`, zero past valid.
__device__ __forceinline__ void stage_floats(float* tile, const float* src, int64_t valid, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) tile[i] = i < valid ? src[i] : 0.0f;
}

// dst[i] = dst[i] + scale * v for a pair of adjacent elements (the backward adds into dqkv).
template <typename T>
__device__ __forceinline__ void add_pair(T* dst, float v0, float v1, float scale) {
  const float2 old = make_float2(static_cast<float>(dst[0]), static_cast<float>(dst[1]));
  *reinterpret_cast<uint32_t*>(dst) = pack2<T>(old.x + scale * v0, old.y + scale * v1);
}

}  // namespace dtrain::cuda::tc
