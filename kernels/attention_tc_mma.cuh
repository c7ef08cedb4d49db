// Warp-level building blocks of the tensor-core attention kernels
// (attention_tc_forward_kernel.cuh, attention_tc_backward_kernels.cuh): the m16n8k16 mma.sync
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
// Fragments come from shared memory by ldmatrix (four 8x8 matrices per warp
// instruction, .trans for operands stored k-major).
//
// Fragment layout of mma.m16n8k16 (lane = 4 g + t, g in 0..7, t in 0..3):
//   A 16x16 (row-major): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
//   B 16x8 (k x n):      b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g)
//   C 16x8 (f32):        c0 c1 (g, 2t..2t+1), c2 c3 (g+8, 2t..2t+1)
// Two adjacent 8-column C tiles are exactly one 16-column A tile.
//
// The same source compiles for the host (no __CUDACC__): the CPU emulation
// (tests/ops/test_attention_tc_emulated.cpp) runs the kernels with a thread
// per GPU thread, and attention_tc_host_warp.h supplies threadIdx and the
// other built-ins, __syncthreads, the shuffles, ldmatrix and mma.
//
// Shared-memory tiles are row-major with a row stride of D + 8 elements: the
// 16-byte pad moves consecutive rows 4 banks apart, so the eight 16-byte rows
// that one ldmatrix phase reads fall in 32 different banks.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "attention_tiles.cuh"

#if defined(__CUDACC__)
#define DTRAIN_TC_FN __device__ __forceinline__
#define DTRAIN_TC_KERNEL(threads) __global__ void __launch_bounds__(threads)
#define DTRAIN_TC_SHARED_BYTES(name) extern __shared__ __align__(16) unsigned char name[]
#define DTRAIN_TC_UNROLL _Pragma("unroll")
#else
#include <cmath>
#include <cstring>

#include "attention_tc_host_warp.h"  // tests/ops: the CPU emulation's GPU built-ins
#define DTRAIN_TC_FN inline
#define DTRAIN_TC_KERNEL(threads) void
#define DTRAIN_TC_SHARED_BYTES(name) unsigned char* name = ::dtrain::tc_emulation::block_shared_memory()
#define DTRAIN_TC_UNROLL
#endif

namespace dtrain::cuda::tc {

constexpr int kThreads = 128;         // backward blocks: 4 warps, each owning 16 rows of the tile
constexpr int kForwardThreads = 256;  // forward blocks: 8 warps
constexpr int kPad = 8;               // elements of padding per shared-memory row

template <int D>
constexpr int row_stride() {
  return D + kPad;
}

// The problem's sizes as the kernels take them.
struct TcDims {
  int64_t T, NH, C;  // C = NH * head size
};

// The (batch, head) pair of a block (grid row y) and where its rows start.
struct BlockHead {
  int64_t bh;       // b * NH + h: the row of lse and D
  int64_t qkv_off;  // element offset of (b, t = 0, head h) in qkv and dqkv [B, T, 3C]
  int64_t out_off;  // the same in out and dout [B, T, C]
};
DTRAIN_TC_FN BlockHead block_head(const TcDims& d, int head_size) {
  const int64_t bh = blockIdx.y, b = bh / d.NH, h = bh % d.NH;
  return {bh, b * d.T * 3 * d.C + h * head_size, b * d.T * d.C + h * head_size};
}

// D += A B on one m16n8k16 tile.
#if defined(__CUDACC__)
template <typename T>
DTRAIN_TC_FN void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);

template <>
DTRAIN_TC_FN void mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <>
DTRAIN_TC_FN void mma_16816<__half>(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#else
template <typename T>
DTRAIN_TC_FN void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  ::dtrain::tc_emulation::warp_mma<T>(d, a, b);
}
#endif

// Moves of 4 and 16 bytes between 16-bit elements and registers: single
// loads and stores on the GPU (the addresses are aligned), memcpy on the host
// (where the casts would break strict aliasing).
DTRAIN_TC_FN void store_u32(void* p, uint32_t v) {
#if defined(__CUDACC__)
  *static_cast<uint32_t*>(p) = v;
#else
  std::memcpy(p, &v, sizeof v);
#endif
}
DTRAIN_TC_FN void copy_16_bytes(void* dst, const void* src) {
#if defined(__CUDACC__)
  *static_cast<uint4*>(dst) = *static_cast<const uint4*>(src);
#else
  std::memcpy(dst, src, 16);
#endif
}
DTRAIN_TC_FN uint32_t bits16(__nv_bfloat16 v) {
  return static_cast<__nv_bfloat16_raw>(v).x;
}
DTRAIN_TC_FN uint32_t bits16(__half v) {
  return static_cast<__half_raw>(v).x;
}

// Two floats rounded to T, lo in the low half (the lower column or k index).
template <typename T>
DTRAIN_TC_FN uint32_t pack2(float lo, float hi);

template <>
DTRAIN_TC_FN uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  return bits16(__float2bfloat16_rn(lo)) | (bits16(__float2bfloat16_rn(hi)) << 16);
}

template <>
DTRAIN_TC_FN uint32_t pack2<__half>(float lo, float hi) {
  return bits16(__float2half_rn(lo)) | (bits16(__float2half_rn(hi)) << 16);
}

// Four 8x8 matrices of 16-bit elements from shared memory in one warp
// instruction: lanes 8i..8i+7 point at the rows of matrix i (16-byte
// aligned); lane 4g + t receives from matrix i the elements (g, 2t..2t+1),
// or with Trans (2t..2t+1, g), packed in r[i].
template <bool Trans>
DTRAIN_TC_FN void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
#if defined(__CUDACC__)
  const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  if constexpr (Trans) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
  }
#else
  ::dtrain::tc_emulation::warp_ldmatrix(r, row, Trans);
#endif
}

// A fragment of rows [r0, r0+16) and columns [k0, k0+16) of a row-major
// tile: matrices (rows +0, cols +0), (+8, +0), (+0, +8), (+8, +8) = a0..a3.
template <typename T, int LD>
DTRAIN_TC_FN void load_a(uint32_t (&a)[4], const T* tile, int r0, int k0, int lane) {
  const int m = lane / 8;
  ldmatrix_x4<false>(a, tile + (r0 + lane % 8 + 8 * (m & 1)) * LD + k0 + 8 * (m >> 1));
}

// B fragments of two adjacent 8-column tiles (n [n0, n0+8) in b[0..1], n
// [n0+8, n0+16) in b[2..3]), k [k0, k0+16), of a tile stored n-major, i.e.
// B[k][n] = tile[n][k]: K for S = Q K^T, V for dP = dO V^T, Q and dO for the
// transposed scores of the key pass. Matrices (n +0, k +0), (+0, +8),
// (+8, +0), (+8, +8).
template <typename T, int LD>
DTRAIN_TC_FN void load_b_nmajor_x2(uint32_t (&b)[4], const T* tile, int n0, int k0, int lane) {
  const int m = lane / 8;
  ldmatrix_x4<false>(b, tile + (n0 + lane % 8 + 8 * (m >> 1)) * LD + k0 + 8 * (m & 1));
}

// The same for a tile stored k-major, B[k][n] = tile[k][n]: V for O = P V,
// K for dQ = dS K, dO and Q for dV and dK. Transposing loads; matrices
// (k +0, n +0), (+8, +0), (+0, +8), (+8, +8).
template <typename T, int LD>
DTRAIN_TC_FN void load_b_kmajor_x2(uint32_t (&b)[4], const T* tile, int n0, int k0, int lane) {
  const int m = lane / 8;
  ldmatrix_x4<true>(b, tile + (k0 + lane % 8 + 8 * (m & 1)) * LD + n0 + 8 * (m >> 1));
}

// C fragments of 16 rows x 16 columns (two 8-column tiles c[j], c[j+1]) as
// the A fragment of the next product (P of O = P V, dS of dQ = dS K).
template <typename T>
DTRAIN_TC_FN void accum_to_a(uint32_t (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
  a[0] = pack2<T>(lo[0], lo[1]);
  a[1] = pack2<T>(lo[2], lo[3]);
  a[2] = pack2<T>(hi[0], hi[1]);
  a[3] = pack2<T>(hi[2], hi[3]);
}

// Where a thread sits: its warp, its lane, and the lane's row group g and column pair t.
struct LaneCoords {
  int warp, lane, g, t;
};
DTRAIN_TC_FN LaneCoords lane_coords() {
  const int lane = static_cast<int>(threadIdx.x % 32);
  return {static_cast<int>(threadIdx.x / 32), lane, lane / 4, lane % 4};
}

// A warp's 16 x N product over D: acc[n] = rows [r0, r0+16) of the row-major
// a_tile times the n-major b_tile's rows [8n, 8n+8) (S = Q K^T and its kin).
template <typename T, int D, int N>
DTRAIN_TC_FN void warp_scores(float (&acc)[N / 8][4], const T* a_tile, const T* b_tile, int r0, int lane) {
  constexpr int LD = row_stride<D>();
  DTRAIN_TC_UNROLL
  for (int n = 0; n < N / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
  DTRAIN_TC_UNROLL
  for (int kk = 0; kk < D; kk += 16) {
    uint32_t a[4];
    load_a<T, LD>(a, a_tile, r0, kk, lane);
    DTRAIN_TC_UNROLL
    for (int n = 0; n < N / 8; n += 2) {
      uint32_t bf[4];
      load_b_nmajor_x2<T, LD>(bf, b_tile, n * 8, kk, lane);
      mma_16816<T>(acc[n], a, {bf[0], bf[1]});
      mma_16816<T>(acc[n + 1], a, {bf[2], bf[3]});
    }
  }
}

// A warp's out (16 x D) += lhs (16 x K, C fragments, rounded to T) times the
// k-major b_tile (K x D): O += P V and its kin.
template <typename T, int D, int K>
DTRAIN_TC_FN void warp_accumulate(float (&out)[D / 8][4], const float (&lhs)[K / 8][4], const T* b_tile, int lane) {
  constexpr int LD = row_stride<D>();
  DTRAIN_TC_UNROLL
  for (int j = 0; j < K / 16; ++j) {
    uint32_t a[4];
    accum_to_a<T>(a, lhs[2 * j], lhs[2 * j + 1]);
    DTRAIN_TC_UNROLL
    for (int n = 0; n < D / 8; n += 2) {
      uint32_t bf[4];
      load_b_kmajor_x2<T, LD>(bf, b_tile, n * 8, j * 16, lane);
      mma_16816<T>(out[n], a, {bf[0], bf[1]});
      mma_16816<T>(out[n + 1], a, {bf[2], bf[3]});
    }
  }
}

template <int N>
DTRAIN_TC_FN void zero_accum(float (&acc)[N / 8][4]) {
  DTRAIN_TC_UNROLL
  for (int n = 0; n < N / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

// The max / sum over the 4 lanes that hold one row of a C fragment.
DTRAIN_TC_FN float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
DTRAIN_TC_FN float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Copies `rows` rows of D elements (global row stride src_stride, 16-byte
// aligned) into a tile of `tile_rows` rows, zero-filling rows >= valid.
// All threads of the block take part; the caller synchronises.
template <typename T, int D>
DTRAIN_TC_FN void stage_rows(T* tile, const T* src, int64_t src_stride, int64_t valid, int tile_rows) {
  constexpr int kChunks = D * static_cast<int>(sizeof(T)) / 16;  // 16-byte chunks per row
  constexpr int kPerChunk = 16 / static_cast<int>(sizeof(T));
  for (int idx = threadIdx.x; idx < tile_rows * kChunks; idx += blockDim.x) {
    const int r = idx / kChunks, c = idx % kChunks;
    T* dst = tile + r * row_stride<D>() + c * kPerChunk;
    if (r < valid) {
      copy_16_bytes(dst, src + r * src_stride + c * kPerChunk);
    } else {
      const uint4 zero = make_uint4(0, 0, 0, 0);
      copy_16_bytes(dst, &zero);
    }
  }
}

// The same copy issued asynchronously (cp.async, 16 bytes a thread, zero-fill
// past `valid`); it lands after cp_async_wait<N>() with at most N younger
// groups outstanding, and a __syncthreads. On the host it is a plain copy.
template <typename T, int D>
DTRAIN_TC_FN void stage_rows_async(T* tile, const T* src, int64_t src_stride, int64_t valid, int tile_rows) {
  constexpr int kChunks = D * static_cast<int>(sizeof(T)) / 16;
  constexpr int kPerChunk = 16 / static_cast<int>(sizeof(T));
  for (int idx = threadIdx.x; idx < tile_rows * kChunks; idx += blockDim.x) {
    const int r = idx / kChunks, c = idx % kChunks;
    T* dst = tile + r * row_stride<D>() + c * kPerChunk;
    const bool in = r < valid;
    const T* from = src + (in ? r : 0) * src_stride + c * kPerChunk;  // a valid address even when nothing is read
#if defined(__CUDACC__)
    const auto saddr = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(saddr), "l"(from), "r"(in ? 16 : 0));
#else
    const uint4 zero = make_uint4(0, 0, 0, 0);
    copy_16_bytes(dst, in ? static_cast<const void*>(from) : &zero);
#endif
  }
}

// Closes the group of cp.async this thread issued since the last commit.
DTRAIN_TC_FN void cp_async_commit() {
#if defined(__CUDACC__)
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Waits until at most N of this thread's committed groups are in flight.
template <int N>
DTRAIN_TC_FN void cp_async_wait() {
#if defined(__CUDACC__)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// The K and V rows of key tile kt (of qkv rows from `base`, row stride
// `stride`, K at +C, V at +2C) into buffer kt & 1 of `kv` (K, then V, each
// kKeyTile rows), by cp.async as one committed group.
template <typename T, int D>
DTRAIN_TC_FN void prefetch_kv(T* kv, const T* base, int64_t stride, int64_t C, int64_t T_len, int64_t kt) {
  constexpr int kTileElems = attention_tiles::kKeyTile * row_stride<D>();
  const attention_tiles::TileRange k = attention_tiles::tile_range(T_len, attention_tiles::kKeyTile, kt);
  T* buf = kv + 2 * (kt & 1) * kTileElems;
  stage_rows_async<T, D>(buf, base + k.begin * stride + C, stride, k.end - k.begin, attention_tiles::kKeyTile);
  stage_rows_async<T, D>(buf + kTileElems, base + k.begin * stride + 2 * C, stride, k.end - k.begin,
                         attention_tiles::kKeyTile);
  cp_async_commit();
}

// One step of a double-buffered loop: issues the next tile's copies when
// there is one, waits for this tile's, and synchronises the block.
template <typename Prefetch>
DTRAIN_TC_FN void pipeline_step(bool has_next, Prefetch&& prefetch_next) {
  if (has_next) {
    prefetch_next();  // into the other buffer, released by the barrier that ended the previous step
    cp_async_wait<1>();
  } else {
    cp_async_wait<0>();
  }
  __syncthreads();
}

// Copies `valid` floats of a row vector into a tile of `n`, zero past valid.
DTRAIN_TC_FN void stage_floats(float* tile, const float* src, int64_t valid, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) tile[i] = i < valid ? src[i] : 0.0f;
}

// dst[i] = dst[i] + scale * v for a pair of adjacent elements (the backward adds into dqkv).
template <typename T>
DTRAIN_TC_FN void add_pair(T* dst, float v0, float v1, float scale) {
  const float2 old = make_float2(static_cast<float>(dst[0]), static_cast<float>(dst[1]));
  store_u32(dst, pack2<T>(old.x + scale * v0, old.y + scale * v1));
}

}  // namespace dtrain::cuda::tc
