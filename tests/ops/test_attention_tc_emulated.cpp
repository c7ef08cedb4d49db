// The tensor-core attention kernels themselves (kernels/attention_tc_forward_kernel.cuh,
// attention_tc_backward_kernels.cuh), compiled for the host and run on the CPU
// with a thread per GPU thread (attention_tc_host_warp.h: barriers, shuffles,
// and mma.sync rebuilt from the PTX fragment layout). What this checks that
// test_attention_tiles cannot: the fragment loads and their index arithmetic,
// shared-memory staging and padding, the lane-to-row and lane-to-column maps
// of the masks and the online softmax, the quad reductions, the writes to
// out, lse and dqkv. What it cannot check: the real tensor cores, timing,
// races and memory errors on the GPU (tests/gpu/check_attention.sh).
//
// Compared with the CPU reference as the GPU test does (inputs rounded to the
// dtype; out and lse 1e-2, dqkv 3e-2 normalised error in bf16, f16 derived).
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "attention_tc_backward_kernels.cuh"
#include "attention_tc_forward_kernel.cuh"
#include "check_close.h"
#include "dtrain/ops.h"
#include "ops/attention_reference.h"
#include "test_support.h"

namespace dtrain::testing {
namespace {

namespace at = dtrain::attention_tiles;
namespace tc = dtrain::cuda::tc;
using tc_emulation::launch;

// Host buffers of 16-bit T standing in for device tensors.
template <typename T>
std::vector<T> to_half(const Tensor& t) {
  std::vector<T> v(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>(t.data<float>()[i]);
  return v;
}

template <typename T>
Tensor to_tensor(const std::vector<T>& v, const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  for (size_t i = 0; i < v.size(); ++i) t.data<float>()[i] = static_cast<float>(v[i]);
  return t;
}

Tensor rounded_as(const Tensor& t, bool bf16) {
  return bf16 ? to_tensor(to_half<__nv_bfloat16>(t), t.shape()) : to_tensor(to_half<__half>(t), t.shape());
}

struct Case {
  int64_t B, T, NH;
};

template <typename T, int D, at::Mask M>
void run_case(const Case& c) {
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  const bool causal = M == at::Mask::causal;
  INFO((kBf16 ? "bf16" : "f16") << " B " << c.B << " T " << c.T << " NH " << c.NH << " hs " << D << " mask "
                                << (causal ? "causal" : "full"));
  const int64_t C = c.NH * D;
  const Tensor qkv = rounded_as(random_tensor({c.B, c.T, 3 * C}, 31, -2.0f, 2.0f), kBf16);
  const Tensor dout = rounded_as(dout_with_zero_rows({c.B, c.T, C}, 32), kBf16);
  const Tensor dqkv0 = rounded_as(random_tensor({c.B, c.T, 3 * C}, 33), kBf16);
  Tensor out_ref = Tensor::empty({c.B, c.T, C}), lse_ref = Tensor::empty({c.B, c.NH, c.T});
  Tensor dqkv_ref = dqkv0.clone();
  reference_attention(out_ref, lse_ref, dqkv_ref, qkv, dout, c.NH, causal);

  const tc::TcDims d{c.T, c.NH, C};
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const std::vector<T> qkv_h = to_half<T>(qkv), dout_h = to_half<T>(dout);
  std::vector<T> out_h(static_cast<size_t>(c.B * c.T * C));
  std::vector<float> lse(static_cast<size_t>(c.B * c.NH * c.T));
  const dim3 f_grid(static_cast<unsigned>(at::tile_count(c.T, at::kForwardQueryTile)),
                    static_cast<unsigned>(c.B * c.NH));
  const dim3 q_grid(static_cast<unsigned>(at::tile_count(c.T, at::kQueryTile)), static_cast<unsigned>(c.B * c.NH));
  const dim3 k_grid(static_cast<unsigned>(at::tile_count(c.T, at::kKeyTile)), static_cast<unsigned>(c.B * c.NH));
  launch(tc::tc_forward_kernel<T, D, M>, f_grid, tc::kForwardThreads, tc::forward_smem_bytes<T, D>(), out_h.data(),
         lse.data(), qkv_h.data(), d, scale);
  const double tol_fwd = tolerance_for(kBf16 ? DType::bf16 : DType::f16, 0.0, 1e-2);
  const double tol_bwd = tolerance_for(kBf16 ? DType::bf16 : DType::f16, 0.0, 3e-2);
  CHECK_CLOSE(to_tensor(out_h, {c.B, c.T, C}), out_ref, tol_fwd);
  CHECK_CLOSE(Tensor::from_vector(lse, {c.B, c.NH, c.T}), lse_ref, tol_fwd);

  // D = dout . out per (b, h, t) in f32 from the 16-bit values, as attention_row_dot.
  std::vector<float> row_dot(lse.size());
  for (int64_t b = 0; b < c.B; ++b) {
    for (int64_t t = 0; t < c.T; ++t) {
      for (int64_t h = 0; h < c.NH; ++h) {
        float acc = 0.0f;
        for (int64_t e = 0; e < D; ++e) {
          const size_t i = static_cast<size_t>((b * c.T + t) * C + h * D + e);
          acc += static_cast<float>(dout_h[i]) * static_cast<float>(out_h[i]);
        }
        row_dot[static_cast<size_t>((b * c.NH + h) * c.T + t)] = acc;
      }
    }
  }
  std::vector<T> dqkv_h = to_half<T>(dqkv0);
  launch(tc::tc_backward_dq_kernel<T, D, M>, q_grid, tc::kThreads, tc::backward_dq_smem_bytes<T, D>(), dqkv_h.data(),
         dout_h.data(), qkv_h.data(), static_cast<const float*>(lse.data()), static_cast<const float*>(row_dot.data()),
         d, scale);
  launch(tc::tc_backward_dkv_kernel<T, D, M>, k_grid, tc::kThreads, tc::backward_dkv_smem_bytes<T, D>(), dqkv_h.data(),
         dout_h.data(), qkv_h.data(), static_cast<const float*>(lse.data()), static_cast<const float*>(row_dot.data()),
         d, scale);
  CHECK_CLOSE(to_tensor(dqkv_h, {c.B, c.T, 3 * C}), dqkv_ref, tol_bwd);
}

TEST_CASE("attention tc emulated: ragged and exact tiles, causal, bf16, head size 64", "[attention_tc_emulated]") {
  for (int64_t T : {1, 63, 64, 65, 130}) run_case<__nv_bfloat16, 64, at::Mask::causal>({1, T, 2});
}

TEST_CASE("attention tc emulated: full mask, bf16, head size 64", "[attention_tc_emulated]") {
  for (int64_t T : {1, 65, 130}) run_case<__nv_bfloat16, 64, at::Mask::full>({2, T, 1});
}

TEST_CASE("attention tc emulated: head size 128, f16, both masks", "[attention_tc_emulated]") {
  for (int64_t T : {63, 130}) {
    run_case<__half, 128, at::Mask::causal>({1, T, 1});
    run_case<__half, 128, at::Mask::full>({1, T, 1});
  }
}

}  // namespace
}  // namespace dtrain::testing
