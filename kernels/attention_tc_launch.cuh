// Host side shared by the tensor-core attention's forward and backward
// launchers: the problem's sizes, the dispatch from runtime (dtype, head
// size, mask) to kernel template arguments, the grid, and the opt-in to more
// than 48 KiB of dynamic shared memory.
#pragma once

#include <type_traits>

#include "attention_tc.h"
#include "attention_tc_backward_kernels.cuh"
#include "attention_tc_forward_kernel.cuh"
#include "attention_tiles.cuh"
#include "common.cuh"

namespace dtrain::cuda::tc {

inline TcDims tc_dims(const Tensor& qkv, int64_t num_heads) {
  return {qkv.size(1), num_heads, qkv.size(2) / 3};
}

// Calls body(T{}, std::integral_constant<int, D>{}, std::integral_constant<Mask, M>{}).
template <typename F>
void dispatch_tc(DType dtype, int64_t hs, bool causal, F&& body) {
  using attention_tiles::Mask;
  auto with_mask = [&](auto tag, auto dim) {
    if (causal) {
      body(tag, dim, std::integral_constant<Mask, Mask::causal>{});
    } else {
      body(tag, dim, std::integral_constant<Mask, Mask::full>{});
    }
  };
  auto with_dim = [&](auto tag) {
    if (hs == 64) {
      with_mask(tag, std::integral_constant<int, 64>{});
    } else if (hs == 128) {
      with_mask(tag, std::integral_constant<int, 128>{});
    } else {
      DTRAIN_THROW("tensor-core attention supports head sizes 64 and 128, got ", hs,
                   "; use DTRAIN_ATTENTION=matmul or flash");
    }
  };
  if (dtype == DType::bf16) {
    with_dim(__nv_bfloat16{});
  } else if (dtype == DType::f16) {
    with_dim(__half{});
  } else {
    DTRAIN_THROW("tensor-core attention supports bf16 and f16, got ", dtype_name(dtype),
                 "; use DTRAIN_ATTENTION=matmul or flash");
  }
}

// One block per tile of `tile` rows (x) and (batch, head) pair (y).
inline dim3 tc_grid(int64_t T, int tile, int64_t batch_heads) {
  DTRAIN_CHECK(batch_heads <= 65535, "tensor-core attention launches one grid row per (batch, head): ", batch_heads,
               " exceed 65535; use a smaller batch or DTRAIN_ATTENTION=matmul");
  return dim3(static_cast<unsigned>(attention_tiles::tile_count(T, tile)), static_cast<unsigned>(batch_heads));
}

// Allows `kernel` `bytes` of dynamic shared memory (sm_80 and sm_90 give a
// block up to 163 KiB / 227 KiB once asked; the default cap is 48 KiB).
template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  DTRAIN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

}  // namespace dtrain::cuda::tc
