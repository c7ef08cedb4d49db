// bf16/f16 models: parameters, gradients and activations in the config's
// dtype, statistics and the loss in f32, and the configurations refused.
#include <catch2/catch.hpp>
#include <cmath>

#include "check_close.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/nn/init.h"
#include "dtrain/ops.h"
#include "nn_test_util.h"
#include "test_support.h"

using namespace dtrain;

namespace {

nn::GPTConfig micro_in(DType dt) {
  nn::GPTConfig c = testing::micro_config();
  c.param_dtype = dt;
  c.compute_dtype = dt;
  return c;
}

// `t` rounded to `dt` (what a bf16 model holds where the f32 model holds t).
Tensor rounded(const Tensor& t, DType dt) {
  return testing::cast_to(t, dt);
}

}  // namespace

TEST_CASE("a bf16 or f16 GPT holds its parameters and gradients in that dtype", "[nn][lowp]") {
  for (DType dt : {DType::bf16, DType::f16}) {
    INFO(dtype_name(dt));
    nn::GPT model(micro_in(dt), Device::cpu(), 21);
    nn::GPT reference(testing::micro_config(), Device::cpu(), 21);
    CHECK(model.dtype() == dt);
    CHECK(model.config().str().find(std::string("dtype=") + dtype_name(dt)) != std::string::npos);
    const auto got = model.named_parameters();
    const auto ref = reference.named_parameters();
    REQUIRE(got.size() == ref.size());
    for (size_t i = 0; i < got.size(); ++i) {
      INFO(got[i].name);
      const nn::Parameter& p = *got[i].param;
      CHECK(p.dtype() == dt);
      CHECK(p.value.dtype() == dt);
      CHECK(p.grad.dtype() == dt);
      // The same draws as the f32 model, rounded once: bit for bit.
      CHECK_CLOSE(p.value, rounded(ref[i].param->value, dt), 0.0);
    }
    for (auto& [name, m] : model.named_modules()) {
      INFO(name);
      CHECK(m->dtype() == dt);
    }
  }
}

TEST_CASE("GPT configurations mixing dtypes that cannot work are refused", "[nn][lowp][config]") {
  nn::GPTConfig c = testing::micro_config();
  c.param_dtype = DType::f32;
  c.compute_dtype = DType::bf16;
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("compute_dtype bf16 differs from param_dtype f32") &&
                                      Catch::Contains("use f32/f32, bf16/bf16 or f16/f16"));
  c.param_dtype = DType::bf16;
  c.compute_dtype = DType::f16;
  CHECK_THROWS_WITH(nn::GPT(c), Catch::Contains("compute_dtype f16 differs from param_dtype bf16"));
  c.param_dtype = DType::i32;
  c.compute_dtype = DType::i32;
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("param_dtype must be f32, bf16 or f16, got i32"));
  CHECK_NOTHROW(micro_in(DType::bf16).validate());
  CHECK_NOTHROW(micro_in(DType::f16).validate());
  CHECK_THROWS_WITH(nn::Linear(2, 3, true, Device::cpu(), DType::i64),
                    Catch::Contains("a module's dtype must be f32, bf16 or f16, got i64"));
}

TEST_CASE("init_normal fills any element range exactly as the whole tensor holds it", "[nn][init]") {
  const int64_t n = 37;  // odd: the last Box-Muller pair is cut
  Tensor whole = Tensor::empty({n});
  nn::init_normal(whole, 0.0f, 0.02f, 1337, nn::stream_id("blocks.0.mlp.fc.weight"));
  for (auto [a, b] : {std::pair<int64_t, int64_t>{0, 37}, {1, 2}, {3, 20}, {10, 11}, {36, 37}, {5, 36}}) {
    INFO("[" << a << ", " << b << ")");
    Tensor slice = Tensor::empty({b - a});
    nn::init_normal(slice, 0.0f, 0.02f, 1337, nn::stream_id("blocks.0.mlp.fc.weight"), a);
    CHECK_CLOSE(slice, whole.narrow(a, b - a), 0.0);
  }
  // A bf16 slice is the f32 slice rounded.
  Tensor low = Tensor::empty({10}, DType::bf16);
  nn::init_normal(low, 0.0f, 0.02f, 1337, nn::stream_id("blocks.0.mlp.fc.weight"), 7);
  CHECK_CLOSE(low, rounded(whole.narrow(7, 10), DType::bf16), 0.0);
  CHECK_THROWS_WITH(nn::init_normal(whole, 0.0f, 1.0f, 1, 2, -1), Catch::Contains("first_element must be >= 0"));
}

TEST_CASE("a bf16 GPT on CUDA trains like the f32 model", "[nn][lowp][gpu]") {
  testing::require_gpu_or_skip();
  nn::GPTConfig c = nn::GPTConfig::preset("tiny");
  c.n_embd = 64;
  nn::GPT reference(c, Device::cuda(), 5);
  c.param_dtype = c.compute_dtype = DType::bf16;
  nn::GPT model(c, Device::cuda(), 5);
  const Tensor tokens = testing::random_tokens(4, 32, c.vocab_size, 1);
  const Tensor targets = testing::random_tokens(4, 32, c.vocab_size, 2);
  const float ref_loss = reference.forward(tokens, targets);
  const float loss = model.forward(tokens, targets);
  // bf16 activations through 2 blocks: the loss (computed in f32 from bf16
  // logits) within 2% of the f32 model's.
  CHECK(std::isfinite(loss));
  CHECK(loss == Approx(ref_loss).epsilon(2e-2));
  reference.backward();
  model.backward();
  const auto pr = reference.named_parameters(), pb = model.named_parameters();
  for (size_t i = 0; i < pr.size(); ++i) {
    INFO(pr[i].name);
    CHECK(pb[i].param->grad.dtype() == DType::bf16);
    // bf16 rounding (u = 2^-8) through ~10 roundings per gradient: 1e-1 of the largest gradient.
    CHECK_CLOSE(pb[i].param->grad, pr[i].param->grad, 1e-1, 0.0);
  }
  std::mt19937_64 rng(1);
  CHECK(nn::generate(model, {'1', '+'}, 3, 0.0f, rng).size() == 3);
}
