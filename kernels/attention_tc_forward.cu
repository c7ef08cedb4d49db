// Tensor-core flash attention, forward: out and lse from qkv, memory linear
// in T. The tile logic (ranges, masks, online softmax) is attention_tiles.cuh,
// shared with the CPU emulation that tests it; the fragments are
// attention_tc_mma.cuh. Design and napkin math: docs/attention.md.
// This file: which calls the kernels take, and the launch
// (the kernel is attention_tc_forward_kernel.cuh).
#include <cmath>
#include <initializer_list>

#include "attention_tc_launch.cuh"

namespace dtrain::cuda {

bool tc_attention_supports(const Tensor& qkv, int64_t num_heads, std::initializer_list<const Tensor*> others) {
  if (!qkv.is_cuda() || (qkv.dtype() != DType::bf16 && qkv.dtype() != DType::f16)) return false;
  if (qkv.dim() != 3 || num_heads < 1 || qkv.size(2) % (3 * num_heads) != 0) return false;
  const int64_t hs = qkv.size(2) / 3 / num_heads;
  bool aligned = reinterpret_cast<uintptr_t>(qkv.data_ptr()) % 16 == 0;
  for (const Tensor* t : others) aligned = aligned && reinterpret_cast<uintptr_t>(t->data_ptr()) % 16 == 0;
  return (hs == 64 || hs == 128) && aligned && qkv.size(0) * num_heads <= 65535;
}

void attention_tc(Tensor& out, Tensor& lse, const Tensor& qkv, int64_t num_heads, bool causal) {
  namespace at = attention_tiles;
  const OpContext ctx(out);
  require_same_dtype("attention", qkv.dtype(), {&out});
  DTRAIN_CHECK(
      reinterpret_cast<uintptr_t>(out.data_ptr()) % 16 == 0 && reinterpret_cast<uintptr_t>(qkv.data_ptr()) % 16 == 0,
      "tensor-core attention needs 16-byte aligned qkv and out; use DTRAIN_ATTENTION=matmul for views");
  const tc::TcDims d = tc::tc_dims(qkv, num_heads);
  const int64_t B = qkv.size(0), hs = d.C / num_heads;
  if (B == 0 || d.T == 0) return;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const dim3 grid = tc::tc_grid(d.T, at::kForwardQueryTile, B * num_heads);
  tc::dispatch_tc(qkv.dtype(), hs, causal, [&](auto tag, auto dim, auto mask) {
    using T = decltype(tag);
    constexpr int D = decltype(dim)::value;
    const auto kernel = tc::tc_forward_kernel<T, D, decltype(mask)::value>;
    const size_t smem = tc::forward_smem_bytes<T, D>();
    tc::allow_smem(kernel, smem);
    kernel<<<grid, tc::kForwardThreads, smem, ctx.stream()>>>(ptr<T>(out), ptr<float>(lse), ptr<T>(qkv), d, scale);
    DTRAIN_LAUNCH_CHECK();
  });
}

}  // namespace dtrain::cuda
