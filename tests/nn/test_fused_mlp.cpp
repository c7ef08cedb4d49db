// The MLP with GELU fused into its GEMMs (ops::linear_gelu,
// ops::matmul_dgelu_bgrad) against the unfused ops it replaced; gradient
// accumulation over micro-batches through it; and the GELU recompute
// (GPTConfig::recompute = 1, and 2 with the layernorms): the same bits as keeping the activation, and
// the peak memory it saves.
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>

#include "check_close.h"
#include "dtrain/allocator.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/nn/layers.h"
#include "dtrain/ops.h"
#include "nn_test_util.h"
#include "test_support.h"

namespace dtrain::testing {
namespace {

// The MLP before fusion, op by op: fc, gelu, proj, and their backwards.
struct UnfusedMLP {
  Tensor w_fc, b_fc, w_proj, b_proj;  // values
  Tensor dw_fc, db_fc, dw_proj, db_proj;
  Tensor h, g, y;

  void forward(const Tensor& x) {
    const DType dt = x.dtype();
    const Shape hidden = nn::with_last_dim(x.shape(), w_fc.size(0));
    h = Tensor::empty(hidden, dt);
    g = Tensor::empty(hidden, dt);
    y = Tensor::empty(x.shape(), dt);
    ops::linear(h, x, w_fc, b_fc);
    ops::gelu(g, h);
    ops::linear(y, g, w_proj, b_proj);
  }
  void backward(const Tensor& x, const Tensor& dout, Tensor& dx) {
    Tensor dg = Tensor::zeros(g.shape(), g.dtype()), dh = Tensor::zeros(h.shape(), h.dtype());
    ops::linear_backward(dg, dw_proj, db_proj, dout, g, w_proj);
    ops::gelu_backward(dh, dg, h);
    ops::linear_backward(dx, dw_fc, db_fc, dh, x, w_fc);
  }
};

void compare_mlp(DType dt, double tol) {
  const int64_t channels = 16, hidden = 64;
  nn::MLP mlp(channels, hidden, Device::cpu(), dt);
  UnfusedMLP ref;
  Tensor* values[] = {&ref.w_fc, &ref.b_fc, &ref.w_proj, &ref.b_proj};
  Tensor* grads[] = {&ref.dw_fc, &ref.db_fc, &ref.dw_proj, &ref.db_proj};
  nn::Parameter* params[] = {&mlp.fc.weight, mlp.fc.bias, &mlp.proj.weight, mlp.proj.bias};
  for (int i = 0; i < 4; ++i) {
    ops::cast(params[i]->value, random_tensor(params[i]->shape(), 40 + static_cast<uint32_t>(i)));
    ops::cast(params[i]->grad, random_tensor(params[i]->shape(), 50 + static_cast<uint32_t>(i)));  // accumulates
    *values[i] = params[i]->value.clone();
    *grads[i] = params[i]->grad.clone();
  }
  const Tensor x = cast_to(random_tensor({2, 5, channels}, 60, -2.0f, 2.0f), dt);
  const Tensor dout = cast_to(random_tensor({2, 5, channels}, 61), dt);
  Tensor dx = cast_to(random_tensor({2, 5, channels}, 62), dt), dx_ref = dx.clone();
  for (int step = 0; step < 2; ++step) {  // twice: the second adds onto the first's gradients
    INFO("dtype " << dtype_name(dt) << ", step " << step);
    const Tensor& y = mlp.forward(x);
    ref.forward(x);
    CHECK_CLOSE(y, ref.y, tol);
    mlp.backward(dout, dx);
    ref.backward(x, dout, dx_ref);
    CHECK_CLOSE(dx, dx_ref, tol);
    for (int i = 0; i < 4; ++i) {
      INFO("parameter " << i);
      CHECK_CLOSE(params[i]->grad, *grads[i], tol);
    }
  }
}

nn::GPTConfig small_config(DType dt, int recompute) {
  nn::GPTConfig c = micro_config();
  c.n_layer = 3;
  c.n_embd = 16;
  c.max_seq_len = 16;
  c.param_dtype = c.compute_dtype = dt;
  c.recompute = recompute;
  return c;
}

// Rows [first, first + count) of a [B, T] token tensor.
Tensor rows_of(const Tensor& tokens, int64_t first, int64_t count) {
  const int64_t t = tokens.size(1);
  Tensor out = Tensor::empty({count, t}, DType::i32);
  std::memcpy(out.data<int32_t>(), tokens.data<int32_t>() + first * t, static_cast<size_t>(count * t) * 4);
  return out;
}

std::vector<std::vector<float>> gradients(const nn::GPT& model) {
  std::vector<std::vector<float>> out;
  for (const auto& np : model.named_parameters()) out.push_back(np.param->grad.to_vector());
  return out;
}

}  // namespace

TEST_CASE("the fused MLP gives the unfused ops' results (f32 bit for bit, bf16 within rounding)", "[nn][fused_mlp]") {
  compare_mlp(DType::f32, 0.0);
  // bf16: the fused backward rounds dpre once instead of twice (dgelu, then dpre)
  // and fc's bias gradient is summed in a bf16 scratch before it is added.
  compare_mlp(DType::bf16, 2e-2);
}

TEST_CASE("two micro-batches through the fused MLP accumulate the gradients of one batch", "[nn][fused_mlp]") {
  for (DType dt : {DType::f32, DType::bf16}) {
    INFO("dtype " << dtype_name(dt));
    const nn::GPTConfig config = small_config(dt, 0);
    nn::GPT model(config, Device::cpu(), 11);
    perturb_parameters(model, 0.2f, 12);
    const Tensor tokens = random_tokens(4, 16, config.vocab_size, 13);
    const Tensor targets = random_tokens(4, 16, config.vocab_size, 14);
    model.zero_grad();
    model.forward(tokens, targets);
    model.backward();
    const auto whole = gradients(model);
    model.zero_grad();
    for (int64_t half = 0; half < 2; ++half) {
      model.forward(rows_of(tokens, 2 * half, 2), rows_of(targets, 2 * half, 2), 0.5f);
      model.backward();
    }
    const auto accumulated = gradients(model);
    const auto names = model.named_parameters();
    const double tol = dt == DType::f32 ? 1e-5 : 2e-2;
    for (size_t i = 0; i < names.size(); ++i) {
      INFO(names[i].name);
      CHECK_CLOSE(accumulated[i], whole[i], tol);
    }
  }
}

TEST_CASE("recompute=1 and 2 give the same losses and gradients bit for bit and lower peaks", "[nn][fused_mlp]") {
  for (DType dt : {DType::f32, DType::bf16}) {
    INFO("dtype " << dtype_name(dt));
    const int64_t batch = 4, seq = 16;
    const Tensor tokens = random_tokens(batch, seq, 11, 21), targets = random_tokens(batch, seq, 11, 22);
    std::vector<float> losses[3];
    std::vector<std::vector<float>> grads[3];
    int64_t peak[3] = {0, 0, 0};
    for (int recompute : {0, 1, 2}) {
      nn::GPT model(small_config(dt, recompute), Device::cpu(), 23);
      perturb_parameters(model, 0.2f, 24);
      model.zero_grad();
      for (int step = 0; step < 2; ++step) {  // the second step measured, with the first's buffers in place
        if (step == 1) reset_peak_memory(Device::cpu());
        losses[recompute].push_back(model.forward(tokens, targets));
        model.backward();
      }
      peak[recompute] = memory_stats(Device::cpu()).peak_bytes;
      grads[recompute] = gradients(model);
    }
    for (int level : {1, 2}) {
      INFO("recompute " << level);
      CHECK(losses[level] == losses[0]);
      REQUIRE(grads[level].size() == grads[0].size());
      for (size_t i = 0; i < grads[0].size(); ++i) CHECK(grads[level][i] == grads[0][i]);
    }
    // Level 1: each layer's GELU output and its gradient scratch (B*T*4C
    // each) are gone outside that layer's MLP: 2 (n_layer - 1) such buffers
    // fewer at the peak. Level 2: every ln1/ln2 output (B*T*C) shares one
    // buffer, so at least n_layer - 1 more activations go.
    const nn::GPTConfig c = small_config(dt, 1);
    const int64_t act_bytes = batch * seq * c.n_embd * static_cast<int64_t>(dtype_size(dt));
    const int64_t hidden_bytes = 4 * act_bytes;
    std::printf("recompute peak (%s, %lld layers, B*T*C = %lld bytes): %lld bytes at 0, %lld at 1, %lld at 2\n",
                dtype_name(dt), static_cast<long long>(c.n_layer), static_cast<long long>(act_bytes),
                static_cast<long long>(peak[0]), static_cast<long long>(peak[1]), static_cast<long long>(peak[2]));
    CHECK(peak[0] - peak[1] >= 2 * (c.n_layer - 1) * hidden_bytes);
    CHECK(peak[1] - peak[2] >= (c.n_layer - 1) * act_bytes);
  }
}

TEST_CASE("recompute=1 inside checkpointed blocks gives the plain model's bits", "[nn][fused_mlp]") {
  const Tensor tokens = random_tokens(2, 16, 11, 31), targets = random_tokens(2, 16, 11, 32);
  float loss[2] = {0.0f, 0.0f};
  std::vector<std::vector<float>> grads[2];
  for (int variant : {0, 1}) {
    nn::GPTConfig config = small_config(DType::f32, variant);
    config.checkpoint_activations = variant == 1;  // the block reruns its forward (GELU dropped again) in backward
    nn::GPT model(config, Device::cpu(), 33);
    perturb_parameters(model, 0.2f, 34);
    model.zero_grad();
    loss[variant] = model.forward(tokens, targets);
    model.backward();
    grads[variant] = gradients(model);
  }
  CHECK(loss[1] == loss[0]);
  CHECK(grads[1] == grads[0]);
}

}  // namespace dtrain::testing
