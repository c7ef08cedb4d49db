// The GPT's fused residual add + layernorm (Block: ln2.forward_residual) and
// its layernorm recompute (GPT::set_recompute_layernorm), at model level:
//  - the fused model equals the unfused composition (add, then ln2), run by
//    hand from the same submodules, bit for bit on the CPU (f32 and bf16),
//    with activation checkpointing off and on;
//  - layernorm recompute changes no loss and no gradient, bit for bit, and
//    lowers the peak of the CPU allocator by the layernorm outputs it stops
//    keeping.
#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "check_close.h"
#include "dtrain/allocator.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/ops.h"
#include "nn_test_util.h"
#include "test_support.h"

using namespace dtrain;

namespace {

struct StepResult {
  double loss = 0.0;
  std::map<std::string, std::vector<double>> grads;
};

std::map<std::string, std::vector<double>> grads_of(const nn::GPT& model) {
  std::map<std::string, std::vector<double>> out;
  for (const auto& np : model.named_parameters()) out[np.name] = testing::as_doubles(np.param->grad.to(Device::cpu()));
  return out;
}

nn::GPTConfig small_config(DType dtype) {
  nn::GPTConfig c = testing::micro_config();
  c.n_embd = 16;
  c.param_dtype = c.compute_dtype = dtype;
  return c;
}

nn::GPT& perturbed(nn::GPT& model) {
  testing::perturb_parameters(model, 0.3f, 5);
  return model;
}

// One training step of the model as built (fused residual + ln2).
StepResult model_step(nn::GPT& model, const Tensor& tokens, const Tensor& targets) {
  model.zero_grad();
  StepResult r;
  r.loss = model.forward(tokens, targets);
  model.backward();
  r.grads = grads_of(model);
  return r;
}

// The same step composed by hand from the model's submodules the way Block
// ran before the fusion: res1 = add(x, attn(ln1(x))), then ln2(res1).
StepResult unfused_step(nn::GPT& model, const Tensor& host_tokens, const Tensor& host_targets) {
  model.zero_grad();
  const DType dt = model.dtype();
  const Device dev = model.device();
  const Tensor tokens = host_tokens.to(dev), targets = host_targets.to(dev);
  const Shape act{tokens.size(0), tokens.size(1), model.config().n_embd};
  const size_t layers = model.blocks.size();
  std::vector<Tensor> inputs(layers), res1(layers), outs(layers);
  const Tensor* x = &model.embed.forward(tokens);
  for (size_t i = 0; i < layers; ++i) {
    nn::Block& b = *model.blocks[i];
    inputs[i] = *x;
    res1[i] = Tensor::empty(act, dt, dev);
    ops::add(res1[i], *x, b.attn.forward(b.ln1.forward(*x)));
    outs[i] = Tensor::empty(act, dt, dev);
    ops::add(outs[i], res1[i], b.mlp.forward(b.ln2.forward(res1[i])));
    x = &outs[i];
  }
  const Tensor& logits = model.head.forward(model.ln_f.forward(*x));
  const int64_t n = tokens.numel(), v = model.config().vocab_size;
  Tensor losses = Tensor::empty({n}, DType::f32, dev), dlogits = Tensor::empty({n, v}, dt, dev);
  Tensor flat_logits = logits.reshape({n, v});
  ops::softmax_cross_entropy(losses, dlogits, flat_logits, targets.reshape({n}), 1.0f / static_cast<float>(n));
  const Tensor host_losses = losses.to(Device::cpu());
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += host_losses.item(i);
  StepResult r;
  r.loss = static_cast<float>(sum / static_cast<double>(n));  // as GPT::forward rounds it

  Tensor dx = Tensor::zeros(act, dt, dev), d = Tensor::zeros(act, dt, dev);
  Tensor dlogits3 = dlogits.reshape({act[0], act[1], v});
  model.head.backward(dlogits3, dx);
  model.ln_f.backward(dx, d);
  for (size_t i = layers; i-- > 0;) {
    nn::Block& b = *model.blocks[i];
    Tensor dres1 = d.clone(), dln = Tensor::zeros(act, dt, dev);
    b.mlp.backward(d, dln);
    b.ln2.backward(dln, dres1);
    Tensor dnext = dres1.clone();
    dln.zero_();
    b.attn.backward(dres1, dln);
    b.ln1.backward(dln, dnext);
    d = dnext;
  }
  model.embed.backward(d);
  r.grads = grads_of(model);
  return r;
}

void check_bitwise(const StepResult& got, const StepResult& ref) {
  CHECK(got.loss == ref.loss);
  REQUIRE(got.grads.size() == ref.grads.size());
  for (const auto& [name, g] : ref.grads) {
    INFO("gradient of " << name);
    CHECK_CLOSE(got.grads.at(name), g, 0.0);
  }
}

}  // namespace

TEST_CASE("the GPT with the fused residual layernorm equals the unfused composition bit for bit",
          "[nn][add_layernorm]") {
  const Tensor tokens = testing::random_tokens(2, 6, 11, 3), targets = testing::random_tokens(2, 6, 11, 4);
  for (DType dt : {DType::f32, DType::bf16}) {
    for (bool checkpointing : {false, true}) {
      INFO(dtype_name(dt) << (checkpointing ? " with activation checkpointing" : ""));
      nn::GPT fused(small_config(dt));
      nn::GPT unfused(small_config(dt));
      fused.set_checkpointing(checkpointing);
      const StepResult got = model_step(perturbed(fused), tokens, targets);
      const StepResult ref = unfused_step(perturbed(unfused), tokens, targets);
      check_bitwise(got, ref);
      // A second step reuses every buffer (and, checkpointed, recomputes the blocks).
      check_bitwise(model_step(fused, tokens, targets), got);
    }
  }
}

TEST_CASE("layernorm recompute keeps losses and gradients bit for bit and lowers the peak", "[nn][recompute]") {
  nn::GPTConfig c = nn::GPTConfig::preset("tiny");
  c.n_layer = 3;
  c.n_embd = 64;
  const int64_t batch = 4, seq = 32;
  const Tensor tokens = testing::random_tokens(batch, seq, c.vocab_size, 1);
  const Tensor targets = testing::random_tokens(batch, seq, c.vocab_size, 2);
  for (bool checkpointing : {false, true}) {
    INFO((checkpointing ? "with" : "without") << " activation checkpointing");
    c.checkpoint_activations = checkpointing;
    // Each model's peak from before it was built: parameters, gradients and
    // every buffer its two steps keep (the same for both, but the layernorm outputs).
    int64_t peak[2] = {0, 0};
    StepResult results[2];
    for (int i = 0; i < 2; ++i) {
      const int64_t before = memory_stats(Device::cpu()).current_bytes;
      reset_peak_memory(Device::cpu());
      nn::GPT model(c);
      model.set_recompute_layernorm(i == 1);
      CHECK(model.blocks[0]->recompute_layernorm() == (i == 1));
      model_step(model, tokens, targets);
      results[i] = model_step(model, tokens, targets);  // every buffer reused
      peak[i] = memory_stats(Device::cpu()).peak_bytes - before;
      if (i == 1) {
        // Switching it off again gives back the plain model's results.
        model.set_recompute_layernorm(false);
        check_bitwise(model_step(model, tokens, targets), results[0]);
      }
    }
    check_bitwise(results[1], results[0]);
    const int64_t activation = batch * seq * c.n_embd * 4;
    const int64_t saved = peak[0] - peak[1];
    CAPTURE(peak[0], peak[1], saved, activation);
    if (checkpointing) {
      // One block's activations at a time: its two layernorm outputs become one buffer.
      CHECK(saved >= activation);
    } else {
      // 2 * n_layer layernorm outputs become one buffer.
      CHECK(saved >= (2 * c.n_layer - 1) * activation);
    }
  }
}

// The first GPU run checks the CUDA kernel (kernels/add_layernorm.cu) the
// same way: it should equal add + layernorm on CUDA bit for bit (same row
// code, same summation order, on both the 16-byte and the scalar path), so
// the fused model equals the unfused composition and recompute changes nothing.
TEST_CASE("on CUDA the fused residual layernorm and layernorm recompute keep the bits", "[nn][gpu][add_layernorm]") {
  testing::require_gpu_or_skip();
  const Device gpu = Device::cuda(0);
  for (const Shape& shape : {Shape{4, 5, 768}, Shape{3, 67}}) {
    for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
      INFO(shape_str(shape) << " " << dtype_name(dt));
      const int64_t ch = shape.back(), rows = shape_numel(shape) / ch;
      auto on_gpu = [&](const Tensor& t) { return testing::cast_to(t, dt).to(gpu); };
      const Tensor a = on_gpu(testing::random_tensor(shape, 1, -2.0f, 3.0f)),
                   b = on_gpu(testing::random_tensor(shape, 2));
      const Tensor w = on_gpu(testing::random_tensor({ch}, 3)), bias = on_gpu(testing::random_tensor({ch}, 4));
      Tensor res[2], out[2], mean[2], rstd[2];
      for (int i = 0; i < 2; ++i) {
        res[i] = Tensor::empty(shape, dt, gpu);
        out[i] = Tensor::empty(shape, dt, gpu);
        mean[i] = Tensor::empty({rows}, DType::f32, gpu);
        rstd[i] = Tensor::empty({rows}, DType::f32, gpu);
      }
      ops::add_layernorm(res[0], out[0], mean[0], rstd[0], a, b, w, bias);
      ops::add(res[1], a, b);
      ops::layernorm(out[1], mean[1], rstd[1], res[1], w, bias);
      CHECK_CLOSE(res[0].to(Device::cpu()), res[1].to(Device::cpu()), 0.0);
      CHECK_CLOSE(out[0].to(Device::cpu()), out[1].to(Device::cpu()), 0.0);
      CHECK_CLOSE(mean[0].to(Device::cpu()), mean[1].to(Device::cpu()), 0.0);
      CHECK_CLOSE(rstd[0].to(Device::cpu()), rstd[1].to(Device::cpu()), 0.0);
    }
  }
  nn::GPTConfig c = nn::GPTConfig::preset("tiny");
  c.n_embd = 64;
  const Tensor tokens = testing::random_tokens(4, 32, c.vocab_size, 1);
  const Tensor targets = testing::random_tokens(4, 32, c.vocab_size, 2);
  for (DType dt : {DType::f32, DType::bf16}) {
    INFO(dtype_name(dt));
    c.param_dtype = c.compute_dtype = dt;
    nn::GPT fused(c, gpu), unfused(c, gpu), recomputing(c, gpu);
    recomputing.set_recompute_layernorm(true);
    const StepResult got = model_step(fused, tokens, targets);
    check_bitwise(unfused_step(unfused, tokens, targets), got);
    check_bitwise(model_step(recomputing, tokens, targets), got);
  }
}

TEST_CASE("layernorm recompute refuses to rewrite a buffer that was reallocated, and needs a forward",
          "[nn][recompute]") {
  nn::LayerNorm first(4), second(4), plain(4);
  auto shared = std::make_shared<Tensor>();
  first.set_recompute(shared);
  second.set_recompute(shared);
  const Tensor x = testing::random_tensor({3, 4}, 1), wider = testing::random_tensor({5, 4}, 2);
  CHECK_THROWS_WITH(first.recompute_output(), Catch::Contains("before forward"));
  CHECK_THROWS_WITH(plain.recompute_output(), Catch::Contains("recompute is off"));
  const Tensor out = first.forward(x).clone();
  CHECK(first.forward(x).shares_storage(*shared));
  second.forward(x);  // same shape: the same storage, overwritten
  first.recompute_output();
  CHECK_CLOSE(*shared, out, 0.0);
  second.forward(wider);  // another shape: the shared buffer is reallocated
  CHECK_THROWS_WITH(first.recompute_output(), Catch::Contains("reallocated"));
}
