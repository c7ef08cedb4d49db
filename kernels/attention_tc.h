// The tensor-core flash attention (bf16 and f16, head sizes 64 and 128, any T),
// causal or full mask; selected for ops::attention by DTRAIN_ATTENTION=tc and
// called directly by its tests and dev benchmark. Plain C++ (no CUDA headers)
// so host test programs can include it. Design: docs/attention.md.
//
// Layout as ops::attention: qkv [B, T, 3C], out [B, T, C], lse [B, NH, T]
// (f32). The backward adds into dqkv, recomputes the probabilities from lse,
// and is deterministic: every element of dqkv is written by one thread.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "dtrain/tensor.h"

namespace dtrain::cuda {

// True when the tensor-core kernels take this call: CUDA bf16 or f16, head
// size 64 or 128, at most 65535 (batch, head) pairs, and qkv and every tensor
// of `others` (out; dqkv and dout) 16-byte aligned (views may not be).
bool tc_attention_supports(const Tensor& qkv, int64_t num_heads, std::initializer_list<const Tensor*> others);

void attention_tc(Tensor& out, Tensor& lse, const Tensor& qkv, int64_t num_heads, bool causal);
void attention_backward_tc(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                           int64_t num_heads, bool causal);

}  // namespace dtrain::cuda
