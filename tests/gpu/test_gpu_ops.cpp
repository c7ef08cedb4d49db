// Cross-backend op test: every op, forward and backward, on CPU (the oracle)
// and on CUDA with the same random inputs, compared by normalised error with
// per-op tolerances for f32 and bf16, f16's derived from bf16's by the ratio
// of their rounding units (tests/compare.h). For bf16/f16 the CPU op gets the
// inputs rounded to that dtype (and computes in f32), so the tolerance only
// covers the CUDA op's own rounding. Odd shapes on purpose: sizes that are not multiples
// of 8 or of a warp, and misaligned views that take the scalar paths.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "check_close.h"
#include "dtrain/ops.h"
#include "dtrain/stream.h"
#include "test_support.h"

#ifdef DTRAIN_WITH_CUDA
#include "core/cuda_caching_allocator.h"
#endif

using namespace dtrain;
using testing::random_tensor;

namespace {

const Device kGpu = Device::cuda(0);
const DType kDtypes[] = {DType::f32, DType::bf16, DType::f16};

// The CPU f32 tensor with every value rounded through `dt` (what the GPU sees).
Tensor rounded(const Tensor& t, DType dt) {
  Tensor low = Tensor::empty(t.shape(), dt);
  Tensor out = Tensor::empty(t.shape(), DType::f32);
  for (int64_t i = 0; i < t.numel(); ++i) {
    low.set_item(i, t.item(i));
    out.set_item(i, low.item(i));
  }
  return out;
}

// A CUDA copy of a CPU f32 tensor, stored as `dt`.
Tensor on_gpu(const Tensor& t, DType dt) {
  Tensor low = Tensor::empty(t.shape(), dt);
  for (int64_t i = 0; i < t.numel(); ++i) low.set_item(i, t.item(i));
  return low.to(kGpu);
}

Tensor gpu_empty(const Shape& shape, DType dt) {
  return Tensor::empty(shape, dt, kGpu);
}

// Tolerance on the normalised error for the dtype (f16 derived from bf16).
double tol(DType dt, double f32_tol, double bf16_tol) {
  return testing::tolerance_for(dt, f32_tol, bf16_tol);
}

}  // namespace

namespace {

// Every transpose combination, 2-D and batched, forward and backward.
void check_matmul_cases(const char* label) {
  const int64_t M = 37, N = 19, K = 53;
  uint32_t seed = 1;
  for (DType dt : kDtypes) {
    for (int64_t batch : {int64_t{0}, int64_t{3}}) {
      for (int ta = 0; ta < 2; ++ta) {
        for (int tb = 0; tb < 2; ++tb) {
          INFO(label << " dtype " << dtype_name(dt) << " batch " << batch << " trans_a " << ta << " trans_b " << tb);
          auto shape = [&](int64_t r, int64_t c) { return batch ? Shape{batch, r, c} : Shape{r, c}; };
          const Tensor a = rounded(random_tensor(ta ? shape(K, M) : shape(M, K), seed++), dt);
          const Tensor b = rounded(random_tensor(tb ? shape(N, K) : shape(K, N), seed++), dt);
          const Tensor out0 = rounded(random_tensor(shape(M, N), seed++), dt);
          Tensor out_cpu = out0.clone();
          ops::matmul(out_cpu, a, b, ta, tb, 0.5f, 0.7f);
          Tensor out_gpu = on_gpu(out0, dt);
          ops::matmul(out_gpu, on_gpu(a, dt), on_gpu(b, dt), ta, tb, 0.5f, 0.7f);
          CHECK_CLOSE(out_gpu, out_cpu, tol(dt, 1e-5, 1e-2));

          const Tensor dout = rounded(random_tensor(shape(M, N), seed++), dt);
          const Tensor da0 = rounded(random_tensor(a.shape(), seed++), dt);
          const Tensor db0 = rounded(random_tensor(b.shape(), seed++), dt);
          Tensor da_cpu = da0.clone(), db_cpu = db0.clone();
          ops::matmul_backward(da_cpu, db_cpu, dout, a, b, ta, tb);
          Tensor da_gpu = on_gpu(da0, dt), db_gpu = on_gpu(db0, dt);
          ops::matmul_backward(da_gpu, db_gpu, on_gpu(dout, dt), on_gpu(a, dt), on_gpu(b, dt), ta, tb);
          CHECK_CLOSE(da_gpu, da_cpu, tol(dt, 1e-5, 1e-2));
          CHECK_CLOSE(db_gpu, db_cpu, tol(dt, 1e-5, 1e-2));
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("gpu ops: matmul and matmul_backward, every transpose, 2-D and batched", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  check_matmul_cases("cuBLASLt");
}

TEST_CASE("gpu ops: matmul through the fallback GEMM kernel", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  ::setenv("DTRAIN_GEMM_FALLBACK", "1", 1);
  check_matmul_cases("fallback");
  ::unsetenv("DTRAIN_GEMM_FALLBACK");
}

TEST_CASE("gpu ops: linear and linear_backward, with and without bias", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  const int64_t B = 2, T = 7, IC = 33, OC = 17;
  for (DType dt : kDtypes) {
    for (bool with_bias : {true, false}) {
      INFO("dtype " << dtype_name(dt) << " bias " << with_bias);
      const Tensor x = rounded(random_tensor({B, T, IC}, 10), dt);
      const Tensor w = rounded(random_tensor({OC, IC}, 11), dt);
      const Tensor bias = with_bias ? rounded(random_tensor({OC}, 12), dt) : Tensor();
      Tensor out_cpu = Tensor::empty({B, T, OC});
      ops::linear(out_cpu, x, w, bias);
      Tensor out_gpu = gpu_empty({B, T, OC}, dt);
      ops::linear(out_gpu, on_gpu(x, dt), on_gpu(w, dt), with_bias ? on_gpu(bias, dt) : Tensor());
      CHECK_CLOSE(out_gpu, out_cpu, tol(dt, 1e-5, 1e-2));

      const Tensor dout = rounded(random_tensor({B, T, OC}, 13), dt);
      const Tensor dx0 = rounded(random_tensor({B, T, IC}, 14), dt);
      const Tensor dw0 = rounded(random_tensor({OC, IC}, 15), dt);
      const Tensor db0 = rounded(random_tensor({OC}, 16), dt);
      Tensor dx_cpu = dx0.clone(), dw_cpu = dw0.clone(), db_cpu = with_bias ? db0.clone() : Tensor();
      ops::linear_backward(dx_cpu, dw_cpu, db_cpu, dout, x, w);
      Tensor dx_gpu = on_gpu(dx0, dt), dw_gpu = on_gpu(dw0, dt), db_gpu = with_bias ? on_gpu(db0, dt) : Tensor();
      ops::linear_backward(dx_gpu, dw_gpu, db_gpu, on_gpu(dout, dt), on_gpu(x, dt), on_gpu(w, dt));
      CHECK_CLOSE(dx_gpu, dx_cpu, tol(dt, 1e-5, 1e-2));
      CHECK_CLOSE(dw_gpu, dw_cpu, tol(dt, 1e-5, 1e-2));
      if (with_bias) CHECK_CLOSE(db_gpu, db_cpu, tol(dt, 1e-5, 1e-2));
    }
  }
}

TEST_CASE("gpu ops: layernorm and layernorm_backward", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  for (DType dt : kDtypes) {
    // Scalar path (C = 67, 1), the fused vector path for each chunk count
    // (C = 256, 768, 2048), the unfused vector path (C = 2056), and more rows
    // than one wave of the fused kernel holds (4099).
    for (const Shape& shape : {Shape{3, 5, 67}, Shape{4, 768}, Shape{1, 1}, Shape{17, 256}, Shape{6, 2048},
                               Shape{3, 2056}, Shape{4099, 768}}) {
      INFO("dtype " << dtype_name(dt) << " shape " << shape_str(shape));
      const int64_t C = shape.back(), rows = shape_numel(shape) / C;
      const Tensor x = rounded(random_tensor(shape, 20, -2.0f, 3.0f), dt);
      const Tensor w = rounded(random_tensor({C}, 21), dt);
      const Tensor b = rounded(random_tensor({C}, 22), dt);
      Tensor out_cpu = Tensor::empty(shape), mean_cpu = Tensor::empty({rows}), rstd_cpu = Tensor::empty({rows});
      ops::layernorm(out_cpu, mean_cpu, rstd_cpu, x, w, b, 1e-5f);
      Tensor out_gpu = gpu_empty(shape, dt), mean_gpu = gpu_empty({rows}, DType::f32),
             rstd_gpu = gpu_empty({rows}, DType::f32);
      const Tensor xg = on_gpu(x, dt), wg = on_gpu(w, dt);
      ops::layernorm(out_gpu, mean_gpu, rstd_gpu, xg, wg, on_gpu(b, dt), 1e-5f);
      CHECK_CLOSE(out_gpu, out_cpu, tol(dt, 1e-5, 1e-2));
      CHECK_CLOSE(mean_gpu, mean_cpu, 1e-5);
      // rstd can be large when C == 1 (variance 0): compare relative to itself.
      CHECK_CLOSE(rstd_gpu, rstd_cpu, 1e-4 * (C == 1 ? 400.0 : 1.0));

      const Tensor dout = rounded(random_tensor(shape, 23), dt);
      const Tensor dx0 = rounded(random_tensor(shape, 24), dt);
      const Tensor dw0 = rounded(random_tensor({C}, 25), dt);
      const Tensor db0 = rounded(random_tensor({C}, 26), dt);
      Tensor dx_cpu = dx0.clone(), dw_cpu = dw0.clone(), db_cpu = db0.clone();
      ops::layernorm_backward(dx_cpu, dw_cpu, db_cpu, dout, x, w, mean_cpu, rstd_cpu);
      Tensor dx_gpu = on_gpu(dx0, dt), dw_gpu = on_gpu(dw0, dt), db_gpu = on_gpu(db0, dt);
      ops::layernorm_backward(dx_gpu, dw_gpu, db_gpu, on_gpu(dout, dt), xg, wg, mean_gpu, rstd_gpu);
      CHECK_CLOSE(dx_gpu, dx_cpu, tol(dt, 1e-4, 2e-2));
      CHECK_CLOSE(dw_gpu, dw_cpu, tol(dt, 1e-4, 2e-2));
      CHECK_CLOSE(db_gpu, db_cpu, tol(dt, 1e-5, 1e-2));
    }
  }
}

TEST_CASE("gpu ops: gelu and gelu_backward, aligned and misaligned", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  for (DType dt : kDtypes) {
    for (int64_t offset : {0, 1}) {
      INFO("dtype " << dtype_name(dt) << " offset " << offset);
      const int64_t n = 1031;
      const Tensor x = rounded(random_tensor({n}, 30, -5.0f, 5.0f), dt);
      Tensor out_cpu = Tensor::empty({n});
      ops::gelu(out_cpu, x);
      // A view that starts `offset` elements into its block: not 16-byte aligned when offset = 1.
      Tensor x_big = on_gpu(rounded(random_tensor({n + 1}, 31), dt), dt);
      Tensor xg = x_big.narrow(offset, n);
      xg.copy_(on_gpu(x, dt));
      Tensor out_big = gpu_empty({n + 1}, dt);
      Tensor out_gpu = out_big.narrow(offset, n);
      ops::gelu(out_gpu, xg);
      CHECK_CLOSE(out_gpu, out_cpu, tol(dt, 1e-5, 1e-2));

      const Tensor dout = rounded(random_tensor({n}, 32), dt);
      const Tensor dx0 = rounded(random_tensor({n}, 33), dt);
      Tensor dx_cpu = dx0.clone();
      ops::gelu_backward(dx_cpu, dout, x);
      Tensor dx_big = gpu_empty({n + 1}, dt);
      Tensor dx_gpu = dx_big.narrow(offset, n);
      dx_gpu.copy_(on_gpu(dx0, dt));
      ops::gelu_backward(dx_gpu, on_gpu(dout, dt), xg);
      CHECK_CLOSE(dx_gpu, dx_cpu, tol(dt, 1e-5, 1e-2));
    }
  }
}

TEST_CASE("gpu ops: causal attention forward and backward, both implementations", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  struct Case {
    int64_t B, T, C, NH;
  };
  for (const char* impl : {"matmul", "flash"}) {
    ::setenv("DTRAIN_ATTENTION", impl, 1);
    for (DType dt : kDtypes) {
      for (const Case& c : {Case{2, 37, 48, 3}, Case{1, 70, 128, 2}, Case{2, 1, 64, 2}, Case{1, 129, 256, 2}}) {
        INFO("impl " << impl << " dtype " << dtype_name(dt) << " B " << c.B << " T " << c.T << " C " << c.C << " NH "
                     << c.NH);
        const Tensor qkv = rounded(random_tensor({c.B, c.T, 3 * c.C}, 40), dt);
        Tensor out_cpu = Tensor::empty({c.B, c.T, c.C}), lse_cpu = Tensor::empty({c.B, c.NH, c.T});
        ops::attention(out_cpu, lse_cpu, qkv, c.NH);
        const Tensor qkv_g = on_gpu(qkv, dt);
        Tensor out_gpu = gpu_empty({c.B, c.T, c.C}, dt), lse_gpu = gpu_empty({c.B, c.NH, c.T}, DType::f32);
        ops::attention(out_gpu, lse_gpu, qkv_g, c.NH);
        CHECK_CLOSE(out_gpu, out_cpu, tol(dt, 1e-5, 1e-2));
        CHECK_CLOSE(lse_gpu, lse_cpu, tol(dt, 1e-5, 1e-2));

        const Tensor dout = rounded(random_tensor({c.B, c.T, c.C}, 41), dt);
        const Tensor dqkv0 = rounded(random_tensor({c.B, c.T, 3 * c.C}, 42), dt);
        Tensor dqkv_cpu = dqkv0.clone();
        ops::attention_backward(dqkv_cpu, dout, qkv, out_cpu, lse_cpu, c.NH);
        Tensor dqkv_gpu = on_gpu(dqkv0, dt);
        ops::attention_backward(dqkv_gpu, on_gpu(dout, dt), qkv_g, out_gpu, lse_gpu, c.NH);
        CHECK_CLOSE(dqkv_gpu, dqkv_cpu, tol(dt, 1e-4, 3e-2));
      }
    }
  }
  ::unsetenv("DTRAIN_ATTENTION");
}

TEST_CASE("gpu ops: softmax_cross_entropy with ignored rows", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  const int64_t N = 13;
  for (int64_t V : {int64_t{1001}, int64_t{1024}}) {  // scalar and vectorised paths
    std::vector<float> targets(N);
    std::mt19937 rng(5);
    for (auto& t : targets) t = static_cast<float>(rng() % V);
    targets[3] = -100.0f;
    targets[12] = -100.0f;
    targets[0] = static_cast<float>(V - 1);
    const Tensor tgt = Tensor::from_vector(targets, {N}, DType::i32);
    for (DType dt : kDtypes) {
      for (bool with_grad : {true, false}) {
        INFO("dtype " << dtype_name(dt) << " V " << V << " dlogits " << with_grad);
        const Tensor logits = rounded(random_tensor({N, V}, 50, -8.0f, 8.0f), dt);
        Tensor loss_cpu = Tensor::empty({N}), dl_cpu = with_grad ? Tensor::empty({N, V}) : Tensor();
        ops::softmax_cross_entropy(loss_cpu, dl_cpu, logits, tgt, 1.0f / 11.0f, -100);
        Tensor loss_gpu = gpu_empty({N}, DType::f32);
        Tensor dl_gpu = with_grad ? on_gpu(random_tensor({N, V}, 51), dt) : Tensor();  // written, not accumulated
        ops::softmax_cross_entropy(loss_gpu, dl_gpu, on_gpu(logits, dt), tgt.to(kGpu), 1.0f / 11.0f, -100);
        CHECK_CLOSE(loss_gpu, loss_cpu, 1e-5);
        CHECK(loss_gpu.to_vector()[3] == 0.0f);
        // Relative to the largest term (floor 0): every term is small, so an
        // absolute tolerance would accept an all-zero gradient.
        if (with_grad) CHECK_CLOSE(dl_gpu, dl_cpu, tol(dt, 1e-5, 1e-2), 0.0);
      }
    }
  }
}

TEST_CASE("gpu ops: embedding and embedding_backward with repeated tokens", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  const int64_t B = 3, T = 7, V = 11, C = 33, maxT = 9;
  std::vector<float> tokens(B * T);
  std::mt19937 rng(6);
  for (auto& t : tokens) t = static_cast<float>(rng() % 5);  // few distinct tokens: many repeats
  tokens[4] = V - 1;
  const Tensor tok = Tensor::from_vector(tokens, {B, T}, DType::i32);
  for (DType dt : kDtypes) {
    INFO("dtype " << dtype_name(dt));
    const Tensor wte = rounded(random_tensor({V, C}, 60), dt), wpe = rounded(random_tensor({maxT, C}, 61), dt);
    Tensor out_cpu = Tensor::empty({B, T, C});
    ops::embedding(out_cpu, tok, wte, wpe);
    Tensor out_gpu = gpu_empty({B, T, C}, dt);
    ops::embedding(out_gpu, tok.to(kGpu), on_gpu(wte, dt), on_gpu(wpe, dt));
    CHECK_CLOSE(out_gpu, out_cpu, tol(dt, 0.0, 1e-2));

    const Tensor dout = rounded(random_tensor({B, T, C}, 62), dt);
    const Tensor dwte0 = rounded(random_tensor({V, C}, 63), dt), dwpe0 = rounded(random_tensor({maxT, C}, 64), dt);
    Tensor dwte_cpu = dwte0.clone(), dwpe_cpu = dwpe0.clone();
    ops::embedding_backward(dwte_cpu, dwpe_cpu, dout, tok);
    Tensor dwte_gpu = on_gpu(dwte0, dt), dwpe_gpu = on_gpu(dwpe0, dt);
    ops::embedding_backward(dwte_gpu, dwpe_gpu, on_gpu(dout, dt), tok.to(kGpu));
    CHECK_CLOSE(dwte_gpu, dwte_cpu, tol(dt, 1e-5, 2e-2));
    CHECK_CLOSE(dwpe_gpu, dwpe_cpu, tol(dt, 1e-5, 2e-2));
    // Deterministic: a second run from the same start gives the same bits.
    Tensor again = on_gpu(dwte0, dt);
    Tensor none;
    ops::embedding_backward(again, none, on_gpu(dout, dt), tok.to(kGpu));
    CHECK_CLOSE(again, dwte_gpu, 0.0);
  }
}

TEST_CASE("gpu ops: add, add_, scale and casts", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  for (DType dt : kDtypes) {
    for (int64_t n : {int64_t{1}, int64_t{1031}, int64_t{4099}}) {
      INFO("dtype " << dtype_name(dt) << " n " << n);
      const Tensor a = rounded(random_tensor({n}, 70), dt), b = rounded(random_tensor({n}, 71), dt);
      Tensor out_cpu = Tensor::empty({n});
      ops::add(out_cpu, a, b);
      Tensor ag = on_gpu(a, dt);
      ops::add(ag, ag, on_gpu(b, dt));  // in place: out aliases a
      CHECK_CLOSE(ag, out_cpu, tol(dt, 0.0, 1e-2));

      Tensor y_cpu = a.clone();
      ops::add_(y_cpu, b, -0.3f);
      Tensor y_gpu = on_gpu(a, dt);
      ops::add_(y_gpu, on_gpu(b, dt), -0.3f);
      CHECK_CLOSE(y_gpu, y_cpu, tol(dt, 1e-6, 1e-2));

      Tensor s_cpu = Tensor::empty({n});
      ops::scale(s_cpu, a, 1.7f);
      Tensor s_gpu = gpu_empty({n}, dt);
      ops::scale(s_gpu, on_gpu(a, dt), 1.7f);
      CHECK_CLOSE(s_gpu, s_cpu, tol(dt, 1e-6, 1e-2));
    }
  }
  // Casts round the same way on both backends: bit-identical results.
  const Tensor x = random_tensor({4099}, 72, -70000.0f, 70000.0f);
  for (DType to : {DType::bf16, DType::f16}) {
    INFO("cast to " << dtype_name(to));
    Tensor low_cpu = Tensor::empty({4099}, to);
    ops::cast(low_cpu, x);
    Tensor low_gpu = gpu_empty({4099}, to);
    ops::cast(low_gpu, x.to(kGpu));
    const Tensor low_back = low_gpu.to(Device::cpu());
    int mismatches = 0;
    for (int64_t i = 0; i < 4099; ++i) mismatches += low_back.item(i) != low_cpu.item(i) ? 1 : 0;
    CHECK(mismatches == 0);
    Tensor up_gpu = gpu_empty({4099}, DType::f32);
    ops::cast(up_gpu, low_gpu);
    CHECK_CLOSE(up_gpu, low_cpu, 0.0);
  }
}

TEST_CASE("gpu ops: adamw_step over several tensors, f32 and bf16 gradients, bf16 copies", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  // The last tensor's state lives in views that start one element into their
  // blocks: not 16-byte aligned, so it takes the element-by-element path.
  const std::vector<int64_t> sizes = {1, 4097, 10000, 5003};
  const std::vector<float> decay = {0.0f, 0.1f, 0.01f, 0.05f};
  auto misaligned_copy = [](const Tensor& host) {
    Tensor block = Tensor::empty({host.numel() + 1}, host.dtype(), kGpu);
    Tensor view = block.narrow(1, host.numel());
    view.copy_(host);
    return view;
  };
  for (DType grad_dt : kDtypes) {
    INFO("grad dtype " << dtype_name(grad_dt));
    std::vector<ops::AdamWTensor> cpu, gpu;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const Shape s{sizes[i]};
      ops::AdamWTensor c;
      c.param = random_tensor(s, 80 + i);
      c.grad = Tensor::empty(s, grad_dt);
      const Tensor g = random_tensor(s, 90 + i);
      for (int64_t k = 0; k < g.numel(); ++k) c.grad.set_item(k, g.item(k));
      c.exp_avg = random_tensor(s, 100 + i, 0.0f, 0.1f);
      c.exp_avg_sq = random_tensor(s, 110 + i, 0.0f, 0.01f);
      if (i == 1) c.param_copy = Tensor::empty(s, DType::bf16);
      c.weight_decay = decay[i];
      ops::AdamWTensor d;
      const bool misaligned = i == 3;
      d.param = misaligned ? misaligned_copy(c.param) : c.param.to(kGpu);
      d.grad = c.grad.to(kGpu);
      d.exp_avg = misaligned ? misaligned_copy(c.exp_avg) : c.exp_avg.to(kGpu);
      d.exp_avg_sq = misaligned ? misaligned_copy(c.exp_avg_sq) : c.exp_avg_sq.to(kGpu);
      if (i == 1) d.param_copy = Tensor::empty(s, DType::bf16, kGpu);
      d.weight_decay = decay[i];
      cpu.push_back(c);
      gpu.push_back(d);
    }
    ops::AdamWConfig config;
    config.lr = 1e-2f;
    config.grad_scale = 0.5f;
    for (int64_t step = 1; step <= 2; ++step) {
      config.step = step;
      ops::adamw_step(cpu, config);
      ops::adamw_step(gpu, config);
    }
    for (size_t i = 0; i < sizes.size(); ++i) {
      INFO("tensor " << i);
      CHECK_CLOSE(gpu[i].param, cpu[i].param, 1e-5);
      CHECK_CLOSE(gpu[i].exp_avg, cpu[i].exp_avg, 1e-6);
      CHECK_CLOSE(gpu[i].exp_avg_sq, cpu[i].exp_avg_sq, 1e-6);
    }
    CHECK_CLOSE(gpu[1].param_copy, cpu[1].param_copy, 1e-2);
  }
}

TEST_CASE("gpu ops: global_norm_squared over mixed tensors", "[gpu_ops][gpu]") {
  testing::require_gpu_or_skip();
  const Tensor a = random_tensor({1000}, 120), b = rounded(random_tensor({3, 5}, 121), DType::bf16),
               c = random_tensor({70001}, 122);
  Tensor out_cpu = Tensor::empty({1});
  ops::global_norm_squared(out_cpu, {a, b, c});
  Tensor out_gpu = gpu_empty({1}, DType::f32);
  ops::global_norm_squared(out_gpu, {a.to(kGpu), on_gpu(b, DType::bf16), c.to(kGpu)});
  const double ref = out_cpu.item(0), got = out_gpu.to_vector()[0];
  CHECK(std::abs(got - ref) <= 1e-5 * ref);
  // The host convenience: the square root of the same sum.
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
