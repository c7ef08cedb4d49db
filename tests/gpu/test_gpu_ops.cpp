// Cross-backend op test: every case of the op registry (tests/op_cases), forward
// and backward, on CPU (the oracle) and on CUDA from the same inputs, compared
// by normalised error with the case's tolerances for f32 and bf16 (f16's
// derived from bf16's by tests/compare.h's tolerance_for). For bf16/f16 the
// CPU op gets the inputs rounded to that dtype (and computes in f32), so the
// tolerance only covers the CUDA op's own rounding. The registry's shapes are
// odd on purpose: sizes that are not multiples of 8 or of a warp, and
// misaligned views that take the scalar paths.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "check_close.h"
#include "dtrain/ops.h"
#include "dtrain/stream.h"
#include "op_case.h"
#include "test_support.h"

#ifdef DTRAIN_WITH_CUDA
#include "core/cuda_caching_allocator.h"
#endif

using namespace dtrain;
using testing::random_tensor;

namespace {

const Device kGpu = Device::cuda(0);

Tensor gpu_empty(const Shape& shape, DType dt) {
  return Tensor::empty(shape, dt, kGpu);
}

void compare_all(const std::vector<op_cases::Check>& checks, const op_cases::Bound& gpu, const op_cases::Bound& cpu,
                 DType dt, const char* pass) {
  for (const op_cases::Check& ch : checks) {
    INFO(pass << " tensor '" << ch.tensor << "'");
    CHECK_CLOSE(gpu.at(ch.tensor), cpu.at(ch.tensor), testing::tolerance_for(dt, ch.f32_tol, ch.bf16_tol), ch.floor);
  }
}

// Every CUDA case of `op` ("" = all but those named in `except`), each in its dtypes.
void run_cases(const std::string& op, const std::string& context, const std::vector<std::string>& except = {}) {
  int ran = 0;
  for (const op_cases::OpCase& c : op_cases::test_cases(op)) {
    if (!c.on_cuda || std::find(except.begin(), except.end(), c.op) != except.end()) continue;
    for (DType dt : c.dtypes) {
      INFO(context << "op " << c.op << ", " << c.label << ", dtype " << dtype_name(dt));
      op_cases::Bound cpu = op_cases::bind(c, dt, Device::cpu(), /*widen=*/true);
      op_cases::Bound gpu = op_cases::bind(c, dt, kGpu);
      c.forward(cpu);
      c.forward(gpu);
      compare_all(c.forward_checks, gpu, cpu, dt, "forward");
      if (c.backward) {
        c.backward(cpu);
        c.backward(gpu);
      }
      compare_all(c.backward_checks, gpu, cpu, dt, "backward");
      ++ran;
    }
  }
  CHECK(ran > 0);
}

}  // namespace

TEST_CASE("gpu ops: every registered op case, CPU against CUDA", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  run_cases("", "", {"attention"});
}

TEST_CASE("gpu ops: matmul and linear through the fallback GEMM kernel", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  ::setenv("DTRAIN_GEMM_FALLBACK", "1", 1);
  run_cases("matmul", "fallback GEMM: ");
  run_cases("linear", "fallback GEMM: ");
  ::unsetenv("DTRAIN_GEMM_FALLBACK");
}

TEST_CASE("gpu ops: the MLP's GELU GEMMs run fused in cuBLASLt, and composed under DTRAIN_GEMM_FALLBACK=1",
          "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  const ops::FusedEpilogueCounts start = ops::fused_epilogue_counts();
  run_cases("linear_gelu", "");
  run_cases("matmul_dgelu_bgrad", "");
  const ops::FusedEpilogueCounts cublaslt = ops::fused_epilogue_counts();
  // Widths that are not multiples of 8 compose; the others should find a cuBLASLt epilogue kernel.
  CHECK(cublaslt.fused > start.fused);
  CHECK(cublaslt.composed > start.composed);
  ::setenv("DTRAIN_GEMM_FALLBACK", "1", 1);
  run_cases("linear_gelu", "fallback GEMM: ");
  run_cases("matmul_dgelu_bgrad", "fallback GEMM: ");
  ::unsetenv("DTRAIN_GEMM_FALLBACK");
  CHECK(ops::fused_epilogue_counts().fused == cublaslt.fused);  // nothing fused with the fallback forced
}

TEST_CASE(
    "gpu ops: causal attention forward and backward, every implementation (tc: bf16 and f16 only, f32 falls back)",
    "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  for (const char* impl : {"matmul", "flash", "tc"}) {
    ::setenv("DTRAIN_ATTENTION", impl, 1);
    run_cases("attention", std::string("DTRAIN_ATTENTION=") + impl + ": ");
  }
  ::unsetenv("DTRAIN_ATTENTION");
}

TEST_CASE("gpu ops: embedding_backward is deterministic with repeated tokens", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  for (const op_cases::OpCase& c : op_cases::test_cases("embedding")) {
    for (DType dt : c.dtypes) {
      INFO(c.label << " dtype " << dtype_name(dt));
      // A second run from the same start gives the same bits.
      op_cases::Bound first = op_cases::bind(c, dt, kGpu), second = op_cases::bind(c, dt, kGpu);
      c.backward(first);
      c.backward(second);
      for (const char* t : {"dwte", "dwpe"})
        if (first.at(t).defined()) CHECK_CLOSE(second.at(t), first.at(t), 0.0);
    }
  }
}

TEST_CASE("gpu ops: global_norm, the host convenience over global_norm_squared", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  const Tensor a = random_tensor({1000}, 120), c = random_tensor({70001}, 122);
  const double norm_ac = ops::global_norm({a, c});
  CHECK(std::abs(ops::global_norm({a.to(kGpu), c.to(kGpu)}) - norm_ac) <= 1e-5 * norm_ac);
}

TEST_CASE("gpu ops: ops run on the current stream, and a warm step allocates nothing new", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  // One small training-like step: linear, gelu, layernorm, attention, cross-entropy and back.
  const int64_t B = 2, T = 16, C = 64, NH = 4, V = 50;
  const Tensor x = random_tensor({B, T, C}, 130).to(kGpu), w = random_tensor({3 * C, C}, 131).to(kGpu),
               lw = random_tensor({C}, 132).to(kGpu), head = random_tensor({V, C}, 133).to(kGpu);
  std::vector<float> t(B * T);
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<float>(i % V);
  const Tensor targets = Tensor::from_vector(t, {B * T}, DType::i32).to(kGpu);
  auto step = [&] {
    Tensor qkv = gpu_empty({B, T, 3 * C}, DType::f32), att = gpu_empty({B, T, C}, DType::f32),
           lse = gpu_empty({B, NH, T}, DType::f32), ln = gpu_empty({B, T, C}, DType::f32),
           mean = gpu_empty({B * T}, DType::f32), rstd = gpu_empty({B * T}, DType::f32),
           g = gpu_empty({B, T, C}, DType::f32), logits = gpu_empty({B * T, V}, DType::f32),
           losses = gpu_empty({B * T}, DType::f32), dlogits = gpu_empty({B * T, V}, DType::f32);
    ops::linear(qkv, x, w, Tensor());
    ops::attention(att, lse, qkv, NH);
    ops::layernorm(ln, mean, rstd, att, lw, Tensor(), 1e-5f);
    ops::gelu(g, ln);
    ops::linear(logits, g.reshape({B * T, C}), head, Tensor());
    ops::softmax_cross_entropy(losses, dlogits, logits, targets, 1.0f / (B * T), -100);
    Tensor dg = Tensor::zeros({B * T, C}, DType::f32, kGpu), dhead = Tensor::zeros({V, C}, DType::f32, kGpu), none;
    ops::linear_backward(dg, dhead, none, dlogits, g.reshape({B * T, C}), head);
    Tensor dln = Tensor::zeros({B, T, C}, DType::f32, kGpu);
    ops::gelu_backward(dln, dg.reshape({B, T, C}), ln);
    Tensor datt = Tensor::zeros({B, T, C}, DType::f32, kGpu), dlw = Tensor::zeros({C}, DType::f32, kGpu);
    ops::layernorm_backward(datt, dlw, none, dln, att, lw, mean, rstd);
    Tensor dqkv = Tensor::zeros({B, T, 3 * C}, DType::f32, kGpu);
    ops::attention_backward(dqkv, datt, qkv, att, lse, NH);
    return losses;
  };
  const Tensor reference = step().to(Device::cpu());
  step();
#ifdef DTRAIN_WITH_CUDA
  const int64_t warm = cuda_allocator_raw_allocations(0);
  for (int i = 0; i < 3; ++i) step();
  CHECK(cuda_allocator_raw_allocations(0) == warm);
#endif
  // The same step on a side stream gives the same losses.
  const Stream side = Stream::side(kGpu);
  side.wait(current_stream(kGpu));
  Tensor on_side;
  {
    StreamGuard guard(side);
    on_side = step();
    side.synchronize();
  }
  CHECK_CLOSE(on_side, reference, 1e-6);
}
