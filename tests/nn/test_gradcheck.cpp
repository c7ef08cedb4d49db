// Whole-model gradient check: every parameter tensor of a small GPT against
// central finite differences of the f32 loss.
//
// Tolerance: per tensor, max |analytic - numeric| / max(max |numeric|, 1e-3)
// (tests/compare.h with floor 1e-3; a NaN or Inf anywhere fails) must stay
// under 2e-2. With h = 1e-2 on weights of spread 0.3 the truncation
// error is ~1e-4 relative and the f32 rounding of a loss near 2.4 contributes
// ~1e-5 absolute; a wrong gradient path (missing residual, wrong transpose,
// missing accumulation of the tied embedding) is off by O(1).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>

#include "check_close.h"
#include "dtrain/allocator.h"
#include "nn_test_util.h"
#include "test_support.h"

using namespace dtrain;

namespace {

struct CheckResult {
  std::string worst_name;
  double worst_error = 0.0;
  int64_t checked = 0;
};

CheckResult finite_difference_check(nn::GPT& model, const Tensor& tokens, const Tensor& targets) {
  model.zero_grad();
  model.forward(tokens, targets);
  model.backward();
  CheckResult result;
  const double h = 1e-2;
  for (auto& np : model.named_parameters()) {
    Tensor& value = np.param->value;
    const std::vector<float> analytic = np.param->grad.to_vector();
    // Up to 24 elements per tensor, spread over it.
    const int64_t n = value.numel();
    const int64_t stride = std::max<int64_t>(1, n / 24);
    std::vector<double> numerics, analytics;
    for (int64_t i = 0; i < n; i += stride) {
      const double orig = value.item(i);
      value.set_item(i, orig + h);
      const double up = model.forward(tokens, targets);
      value.set_item(i, orig - h);
      const double down = model.forward(tokens, targets);
      value.set_item(i, orig);
      const double numeric = (up - down) / (2 * h);
      numerics.push_back(numeric);
      analytics.push_back(analytic[static_cast<size_t>(i)]);
      ++result.checked;
    }
    const testing::Comparison c = testing::compare(analytics, numerics, 2e-2, 1e-3);
    const double err = c.error;
    if (!(err <= result.worst_error)) {  // NaN counts as worst
      result.worst_error = err;
      result.worst_name = np.name;
    }
    INFO("parameter " << np.name << ": " << c.message);
    CHECK(c.ok);
  }
  return result;
}

}  // namespace

TEST_CASE("GPT gradients match central finite differences", "[nn][gradcheck]") {
  const bool checkpointing = GENERATE(false, true);
  nn::GPTConfig config = testing::micro_config();
  config.checkpoint_activations = checkpointing;
  nn::GPT model(config, Device::cpu(), 7);
  testing::perturb_parameters(model, 0.3f, 11);
  const Tensor tokens = testing::random_tokens(2, 5, config.vocab_size, 1);
  const Tensor targets = testing::random_tokens(2, 5, config.vocab_size, 2);
  const CheckResult r = finite_difference_check(model, tokens, targets);
  std::printf("gradcheck (checkpointing %s): %lld elements, worst %s at %.2e\n", checkpointing ? "on" : "off",
              static_cast<long long>(r.checked), r.worst_name.c_str(), r.worst_error);
  CHECK(r.checked > 300);
}

TEST_CASE("activation checkpointing gives bitwise the same gradients", "[nn][checkpoint]") {
  nn::GPTConfig config = testing::micro_config();
  nn::GPT plain(config, Device::cpu(), 3);
  config.checkpoint_activations = true;
  nn::GPT ckpt(config, Device::cpu(), 3);
  const Tensor tokens = testing::random_tokens(3, 8, config.vocab_size, 5);
  const Tensor targets = testing::random_tokens(3, 8, config.vocab_size, 6);
  for (int step = 0; step < 2; ++step) {  // the second step reuses (plain) / re-creates (ckpt) buffers
    plain.zero_grad();
    ckpt.zero_grad();
    const float a = plain.forward(tokens, targets);
    const float b = ckpt.forward(tokens, targets);
    CHECK(a == b);
    plain.backward();
    ckpt.backward();
    const auto pa = plain.named_parameters();
    const auto pb = ckpt.named_parameters();
    REQUIRE(pa.size() == pb.size());
    for (size_t i = 0; i < pa.size(); ++i) {
      INFO(pa[i].name);
      CHECK(pa[i].param->grad.to_vector() == pb[i].param->grad.to_vector());
    }
  }
}

TEST_CASE("activation checkpointing lowers peak memory", "[nn][checkpoint]") {
  nn::GPTConfig config = testing::micro_config();
  config.n_layer = 6;
  config.n_embd = 32;
  config.max_seq_len = 64;
  auto peak_for = [&](bool on) {
    config.checkpoint_activations = on;
    nn::GPT model(config, Device::cpu(), 3);
    const Tensor tokens = testing::random_tokens(8, 64, config.vocab_size, 5);
    model.forward(tokens, tokens);
    model.backward();
    model.release_activations();
    reset_peak_memory(Device::cpu());
    const int64_t base = memory_stats(Device::cpu()).current_bytes;
    model.forward(tokens, tokens);
    model.backward();
    return memory_stats(Device::cpu()).peak_bytes - base;
  };
  const int64_t plain = peak_for(false);
  const int64_t ckpt = peak_for(true);
  std::printf("activation peak: %lld bytes plain, %lld with checkpointing\n", static_cast<long long>(plain),
              static_cast<long long>(ckpt));
  CHECK(ckpt < plain * 6 / 10);
}
