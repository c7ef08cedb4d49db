// Internal: the two implementations behind ops::attention (see docs/cuda.md).
//
// "matmul" (default): cuBLAS strided-batched GEMMs around a fused
// scale-mask-softmax kernel; scores live in a [B*NH, T, T] scratch buffer
// (quadratic memory). Simple enough to be right before it ever ran.
// "flash" (DTRAIN_ATTENTION=flash): tiled with an online softmax, memory
// linear in T, forward and backward; head size up to 128. It becomes the
// default only after it has matched "matmul" on a GPU.
#pragma once

#include "common.cuh"

namespace dtrain::cuda {

enum class AttentionImpl { matmul, flash, tc };
// What ops::attention runs when DTRAIN_ATTENTION is unset or empty. Calls the
// chosen path does not take (dtype, head size, alignment) fall back to matmul.
// tc becomes the default by changing this line to AttentionImpl::tc, once
// tests/gpu/check_attention.sh and test_attention_training pass on a GPU
// (docs/attention.md, "Making tc the default").
inline constexpr AttentionImpl kDefaultAttentionImpl = AttentionImpl::matmul;
// From DTRAIN_ATTENTION ("matmul", "flash", "tc": attention_tc.h; unset or
// empty: kDefaultAttentionImpl); anything else throws.
AttentionImpl attention_impl();
// True when the flash kernels support head size `hs` (others use "matmul").
bool flash_attention_supports(int64_t hs);

void attention_flash(const OpContext& ctx, Tensor& out, Tensor& lse, const Tensor& qkv, int64_t num_heads);
void attention_backward_flash(const OpContext& ctx, Tensor& dqkv, const Tensor& dout, const Tensor& qkv,
                              const Tensor& out, const Tensor& lse, int64_t num_heads);

// D[b, h, t] = sum_d dout[b, t, h, d] * out[b, t, h, d] (f32), shared by both backward passes.
void attention_row_dot(const OpContext& ctx, float* D, const Tensor& dout, const Tensor& out, int64_t num_heads);

}  // namespace dtrain::cuda
