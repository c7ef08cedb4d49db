// The tensor-core flash attention (kernels/attention_tc.h) on a GPU against
// the CPU references: ops::attention for the causal mask, a naive double loop
// for the full mask (tests/ops/attention_reference.h). Every shape class the
// kernels support: T of 1, 63, 64, 65, 129 and 1000 (ragged and exact tiles), head
// sizes 64 and 128, both masks, bf16 and f16, output gradients with rows of
// zeros, a backward that adds into a non-zero dqkv. The CPU side gets the
// inputs rounded to the GPU's dtype, so the tolerances cover the kernels'
// own roundings only:
//   out, lse: normalised error 1e-2 in bf16 (P is rounded to bf16 before P V)
//   dqkv:     3e-2 in bf16 (P and dS rounded before their products)
//   f16: derived from bf16's by the ratio of rounding units (tests/compare.h).
// Also: the backward is bitwise deterministic, DTRAIN_ATTENTION=tc routes
// ops::attention here, and shapes it does not support fall back.
#include <catch2/catch.hpp>
#include <cstdlib>

#include "check_close.h"
#include "dtrain/ops.h"
#include "ops/attention_reference.h"
#include "test_support.h"

#ifdef DTRAIN_WITH_CUDA
#include "attention_tc.h"
#endif

using namespace dtrain;
using testing::cast_to;
using testing::random_tensor;

namespace {

const Device kGpu = Device::cuda(0);

// The CPU f32 tensor with every value rounded through `dt` (what the GPU sees).
Tensor rounded(const Tensor& t, DType dt) {
  return cast_to(cast_to(t, dt), DType::f32);
}

// A CUDA copy of a CPU f32 tensor, stored as `dt`.
Tensor on_gpu(const Tensor& t, DType dt) {
  return cast_to(t, dt).to(kGpu);
}

// A CUDA tensor back on the CPU as f32, for the comparison.
Tensor on_cpu(const Tensor& t) {
  const Tensor host = t.to(Device::cpu());
  return host.dtype() == DType::f32 ? host : cast_to(host, DType::f32);
}

double tol(DType dt, double bf16_tol) {
  return testing::tolerance_for(dt, 0.0, bf16_tol);
}

struct Shape4 {
  int64_t B, T, NH, hs;
};

// Runs one shape, dtype and mask through the kernels and the reference.
void check_case(const Shape4& s, DType dt, bool causal) {
#ifdef DTRAIN_WITH_CUDA
  INFO("dtype " << dtype_name(dt) << " B " << s.B << " T " << s.T << " NH " << s.NH << " hs " << s.hs << " mask "
                << (causal ? "causal" : "full"));
  const int64_t C = s.NH * s.hs;
  const Tensor qkv = rounded(random_tensor({s.B, s.T, 3 * C}, 11, -2.0f, 2.0f), dt);
  const Tensor dout = rounded(testing::dout_with_zero_rows({s.B, s.T, C}, 12), dt);
  const Tensor dqkv0 = rounded(random_tensor({s.B, s.T, 3 * C}, 13), dt);
  Tensor out_ref = Tensor::empty({s.B, s.T, C}), lse_ref = Tensor::empty({s.B, s.NH, s.T});
  Tensor dqkv_ref = dqkv0.clone();
  testing::reference_attention(out_ref, lse_ref, dqkv_ref, qkv, dout, s.NH, causal);
  const Tensor qkv_g = on_gpu(qkv, dt), dout_g = on_gpu(dout, dt);
  REQUIRE(cuda::tc_attention_supports(qkv_g, s.NH, {}));
  Tensor out = Tensor::empty({s.B, s.T, C}, dt, kGpu), lse = Tensor::empty({s.B, s.NH, s.T}, DType::f32, kGpu);
  cuda::attention_tc(out, lse, qkv_g, s.NH, causal);
  CHECK_CLOSE(on_cpu(out), out_ref, tol(dt, 1e-2));
  CHECK_CLOSE(on_cpu(lse), lse_ref, tol(dt, 1e-2));
  Tensor dqkv = on_gpu(dqkv0, dt);
  cuda::attention_backward_tc(dqkv, dout_g, qkv_g, out, lse, s.NH, causal);
  CHECK_CLOSE(on_cpu(dqkv), dqkv_ref, tol(dt, 3e-2));
  // Deterministic: a second run from the same start is bitwise equal.
  Tensor again = on_gpu(dqkv0, dt);
  cuda::attention_backward_tc(again, dout_g, qkv_g, out, lse, s.NH, causal);
  CHECK_CLOSE(on_cpu(again), on_cpu(dqkv), 0.0);
#endif
}

// Every shape class with one mask: T of 1, 63, 64, 65 (2 batches, 2 heads),
// 129 (two forward tiles) and 1000, head sizes 64 and 128, bf16 and f16.
void check_all_shapes(bool causal) {
  for (DType dt : {DType::bf16, DType::f16}) {
    for (int64_t hs : {64, 128}) {
      for (int64_t T : {1, 63, 64, 65}) check_case({2, T, 2, hs}, dt, causal);
      check_case({1, 129, 2, hs}, dt, causal);
      check_case({1, 1000, causal ? 2 : 1, hs}, dt, causal);
    }
  }
}

}  // namespace

TEST_CASE("flash attention tc: every T and head size, causal, bf16 and f16", "[flash_attention][gpu]") {
  testing::require_gpu_or_skip();
  check_all_shapes(true);
}

TEST_CASE("flash attention tc: every T and head size, full mask, bf16 and f16", "[flash_attention][gpu]") {
  testing::require_gpu_or_skip();
  check_all_shapes(false);
}

// The shapes compute-sanitizer memcheck and racecheck run (tests/gpu/check_attention.sh):
// ragged and exact tiles, one of each head size and mask, small enough to run under the tools.
TEST_CASE("flash attention tc: small shapes for the sanitizers", "[flash_attention][gpu][sanitize]") {
  testing::require_gpu_or_skip();
  for (int64_t hs : {64, 128}) {
    for (bool causal : {true, false}) {
      for (int64_t T : {65, 129}) check_case({1, T, 1, hs}, DType::bf16, causal);
    }
  }
}

TEST_CASE("flash attention tc: DTRAIN_ATTENTION=tc routes ops::attention, other shapes fall back",
          "[flash_attention][gpu]") {
  testing::require_gpu_or_skip();
  ::setenv("DTRAIN_ATTENTION", "tc", 1);
  const DType dt = DType::bf16;
  for (int64_t hs : {32, 64}) {  // 32: not a tensor-core shape, served by the batched-GEMM path
    INFO("hs " << hs);
    const int64_t B = 2, T = 77, NH = 3, C = NH * hs;
    const Tensor qkv = rounded(random_tensor({B, T, 3 * C}, 21), dt);
    const Tensor dout = rounded(random_tensor({B, T, C}, 22), dt);
    Tensor out_ref = Tensor::empty({B, T, C}), lse_ref = Tensor::empty({B, NH, T});
    Tensor dqkv_ref = Tensor::zeros({B, T, 3 * C});
    ops::attention(out_ref, lse_ref, qkv, NH);
    ops::attention_backward(dqkv_ref, dout, qkv, out_ref, lse_ref, NH);
    const Tensor qkv_g = on_gpu(qkv, dt);
    Tensor out = Tensor::empty({B, T, C}, dt, kGpu), lse = Tensor::empty({B, NH, T}, DType::f32, kGpu);
    ops::attention(out, lse, qkv_g, NH);
    CHECK_CLOSE(on_cpu(out), out_ref, tol(dt, 1e-2));
    CHECK_CLOSE(on_cpu(lse), lse_ref, tol(dt, 1e-2));
    Tensor dqkv = Tensor::zeros({B, T, 3 * C}, dt, kGpu);
    ops::attention_backward(dqkv, on_gpu(dout, dt), qkv_g, out, lse, NH);
    CHECK_CLOSE(on_cpu(dqkv), dqkv_ref, tol(dt, 3e-2));
  }
  ::unsetenv("DTRAIN_ATTENTION");
}
