// The GPU built-ins the tensor-core attention kernels use, for running those
// kernels unchanged on the CPU (tests/ops/test_attention_tc_emulated.cpp):
// one std::thread per GPU thread, a block at a time, so that every index, the
// shared-memory staging, the barriers, the quad shuffles and the mma fragment
// layouts of kernels/attention_tc_*.cuh run as written.
//
// - threadIdx, blockIdx, gridDim, blockDim: thread-local, set by launch().
// - __syncthreads(): a barrier of the block's 128 threads.
// - __shfl_xor_sync: each lane of the warp posts its value, then reads its partner's.
// - warp_ldmatrix: ldmatrix.sync.m8n8.x4(.trans).b16: lanes 8i..8i+7 give the
//   row addresses of matrix i; lane 4g + t receives, from each matrix, the
//   elements (g, 2t) and (g, 2t+1), or with .trans (2t, g) and (2t+1, g).
// - warp_mma: mma.sync.m16n8k16 (f32 accumulators) from the PTX ISA's fragment
//   layout, written here independently of the kernels' fragment loads: each
//   lane posts its registers, the 16x16 A and 16x8 B are rebuilt, each lane
//   computes its own four elements of D.
// Shared memory starts filled with 0xff bytes (NaN in f32, bf16 and f16), so
// reading what was never staged shows up in the results.
//
// Included by kernels/attention_tc_mma.cuh when it is compiled without nvcc.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <vector_types.h>

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace dtrain::tc_emulation {

constexpr int kMaxWarps = 8;  // the largest block the kernels launch (256 threads)

// A reusable barrier of n threads.
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t gen = generation_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return generation_ != gen; });
  }

 private:
  const int n_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
};

// What the threads of one block share.
struct BlockState {
  BlockState(int threads, size_t smem_bytes) : smem(smem_bytes, 0xff), block(threads) {
    for (auto& w : warps) w = std::make_unique<Barrier>(32);
  }
  std::vector<unsigned char> smem;
  Barrier block;
  std::unique_ptr<Barrier> warps[kMaxWarps];
  float shfl[kMaxWarps][32] = {};
  uint32_t a[kMaxWarps][32][4] = {};
  uint32_t b[kMaxWarps][32][2] = {};
  const unsigned char* rows[kMaxWarps][32] = {};
};

inline thread_local BlockState* tls_block = nullptr;

inline unsigned char* block_shared_memory() {
  return tls_block->smem.data();
}

}  // namespace dtrain::tc_emulation

// The CUDA built-ins, in the global namespace as nvcc has them.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 gridDim;
inline thread_local dim3 blockDim;

inline void __syncthreads() {
  dtrain::tc_emulation::tls_block->block.wait();
}

inline float __shfl_xor_sync(unsigned /*mask*/, float v, int lane_mask) {
  auto& st = *dtrain::tc_emulation::tls_block;
  const unsigned w = threadIdx.x / 32, l = threadIdx.x % 32;
  st.shfl[w][l] = v;
  st.warps[w]->wait();
  const float r = st.shfl[w][l ^ static_cast<unsigned>(lane_mask)];
  st.warps[w]->wait();  // every lane has read before the slots are reused
  return r;
}

namespace dtrain::tc_emulation {

// The 16-bit value in the low (hi = false) or high half of a register, as float.
template <typename T>
float half_of(uint32_t reg, bool hi) {
  const auto bits = static_cast<unsigned short>(hi ? reg >> 16 : reg & 0xffffu);
  if constexpr (std::is_same_v<T, __half>) {
    __half_raw raw;
    raw.x = bits;
    return __half2float(__half(raw));
  } else {
    __nv_bfloat16_raw raw;
    raw.x = bits;
    return __bfloat162float(__nv_bfloat16(raw));
  }
}

// The four 8x8 matrices of 16-bit elements whose rows the warp's lanes point at.
inline void warp_ldmatrix(uint32_t (&r)[4], const void* row, bool trans) {
  BlockState& st = *tls_block;
  const unsigned w = threadIdx.x / 32, lane = threadIdx.x % 32;
  st.rows[w][lane] = static_cast<const unsigned char*>(row);
  st.warps[w]->wait();
  const unsigned g = lane / 4, t = lane % 4;
  auto element = [&](unsigned matrix, unsigned i, unsigned j) {  // row i, column j of a matrix
    uint16_t v;
    std::memcpy(&v, st.rows[w][8 * matrix + i] + 2 * j, sizeof v);
    return static_cast<uint32_t>(v);
  };
  for (unsigned m = 0; m < 4; ++m) {
    r[m] = trans ? element(m, 2 * t, g) | (element(m, 2 * t + 1, g) << 16)
                 : element(m, g, 2 * t) | (element(m, g, 2 * t + 1) << 16);
  }
  st.warps[w]->wait();  // every lane has read before the addresses are posted again
}

// d += A B for the calling warp, every lane passing its own fragments.
template <typename T>
void warp_mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  BlockState& st = *tls_block;
  const unsigned w = threadIdx.x / 32, lane = threadIdx.x % 32;
  std::memcpy(st.a[w][lane], a, sizeof a);
  std::memcpy(st.b[w][lane], b, sizeof b);
  st.warps[w]->wait();
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    const uint32_t* ra = st.a[w][l];
    for (int h = 0; h < 2; ++h) {
      A[g][2 * t + h] = half_of<T>(ra[0], h == 1);
      A[g + 8][2 * t + h] = half_of<T>(ra[1], h == 1);
      A[g][2 * t + 8 + h] = half_of<T>(ra[2], h == 1);
      A[g + 8][2 * t + 8 + h] = half_of<T>(ra[3], h == 1);
      B[2 * t + h][g] = half_of<T>(st.b[w][l][0], h == 1);
      B[2 * t + 8 + h][g] = half_of<T>(st.b[w][l][1], h == 1);
    }
  }
  st.warps[w]->wait();  // every lane has read the registers before they are posted again
  const int g = static_cast<int>(lane) / 4, t = static_cast<int>(lane) % 4;
  for (int e = 0; e < 4; ++e) {
    const int row = g + 8 * (e / 2), col = 2 * t + e % 2;
    float acc = d[e];
    for (int k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];
    d[e] = acc;
  }
}

// Runs kernel(args...) over the grid, a block of `threads` (a multiple of 32) at a time.
template <typename Kernel, typename... Args>
void launch(Kernel kernel, dim3 grid, int threads, size_t smem_bytes, Args... args) {
  for (unsigned by = 0; by < grid.y; ++by) {
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      BlockState st(threads, smem_bytes);
      std::vector<std::thread> pool;
      pool.reserve(static_cast<size_t>(threads));
      for (unsigned tid = 0; tid < static_cast<unsigned>(threads); ++tid) {
        pool.emplace_back([&, tid] {
          tls_block = &st;
          threadIdx = uint3{tid, 0, 0};
          blockIdx = uint3{bx, by, 0};
          gridDim = grid;
          blockDim = dim3(static_cast<unsigned>(threads));
          kernel(args...);
        });
      }
      for (auto& t : pool) t.join();
    }
  }
}

}  // namespace dtrain::tc_emulation
