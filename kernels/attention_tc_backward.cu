// Tensor-core flash attention, backward: adds dQ, dK, dV into dqkv from
// dout, qkv, out and the forward's lse, recomputing the probabilities.
// Deterministic: two kernels, each element of dqkv written by one thread, no
// atomics. The kernels are attention_tc_backward_kernels.cuh, their tile
// loops attention_tiles.cuh, their fragments attention_tc_mma.cuh; this file
// launches them.
//
// D_i = dout_i . out_i comes first (attention_row_dot, shared with the other
// implementations). Then, with P = exp(scale Q K^T - lse) and dS = P (dP - D):
//  - query pass, a block per query tile of 64 rows, warp = 16 rows:
//      S = Q K^T, dP = dO V^T, dS, dQ += dS K   over the key tiles it sees
//  - key pass, a block per key tile of 64 rows, warp = 16 keys, transposed:
//      S^T = K Q^T, dP^T = V dO^T, dS^T, dV += P^T dO, dK += dS^T Q
//    over the query tiles that see it.
// That is 7 tile products where an atomic dQ would need 5: the price of
// determinism, paid on the tensor cores. Design: docs/attention.md.
#include <cmath>
#include <initializer_list>

#include "attention.cuh"
#include "attention_tc_launch.cuh"

namespace dtrain::cuda {

void attention_backward_tc(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                           int64_t num_heads, bool causal) {
  namespace at = attention_tiles;
  const OpContext ctx(dout);
  require_same_dtype("attention_backward", qkv.dtype(), {&dout, &out, &dqkv});
  for (const Tensor* t : std::initializer_list<const Tensor*>{&dqkv, &dout, &qkv}) {
    DTRAIN_CHECK(reinterpret_cast<uintptr_t>(t->data_ptr()) % 16 == 0,
                 "tensor-core attention backward needs 16-byte aligned dqkv, dout and qkv; got ", t->describe(),
                 "; use DTRAIN_ATTENTION=matmul for views");
  }
  const tc::TcDims d = tc::tc_dims(qkv, num_heads);
  const int64_t B = qkv.size(0), hs = d.C / num_heads;
  if (B == 0 || d.T == 0) return;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  Tensor row_dot = ctx.scratch({B * num_heads * d.T});
  attention_row_dot(ctx, ptr<float>(row_dot), dout, out, num_heads);
  const dim3 q_grid = tc::tc_grid(d.T, at::kQueryTile, B * num_heads);
  const dim3 k_grid = tc::tc_grid(d.T, at::kKeyTile, B * num_heads);
  tc::dispatch_tc(qkv.dtype(), hs, causal, [&](auto tag, auto dim, auto mask) {
    using T = decltype(tag);
    constexpr int D = decltype(dim)::value;
    constexpr at::Mask M = decltype(mask)::value;
    const size_t tiles = tc::backward_dq_smem_bytes<T, D>();
    const auto dq_kernel = tc::tc_backward_dq_kernel<T, D, M>;
    tc::allow_smem(dq_kernel, tiles);
    dq_kernel<<<q_grid, tc::kThreads, tiles, ctx.stream()>>>(ptr<T>(dqkv), ptr<T>(dout), ptr<T>(qkv), ptr<float>(lse),
                                                             ptr<float>(row_dot), d, scale);
    DTRAIN_LAUNCH_CHECK();
    const size_t dkv_smem = tc::backward_dkv_smem_bytes<T, D>();
    const auto dkv_kernel = tc::tc_backward_dkv_kernel<T, D, M>;
    tc::allow_smem(dkv_kernel, dkv_smem);
    dkv_kernel<<<k_grid, tc::kThreads, dkv_smem, ctx.stream()>>>(ptr<T>(dqkv), ptr<T>(dout), ptr<T>(qkv),
                                                                 ptr<float>(lse), ptr<float>(row_dot), d, scale);
    DTRAIN_LAUNCH_CHECK();
  });
}

}  // namespace dtrain::cuda
