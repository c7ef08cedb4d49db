// Long context on the CPU (issue 11): a GPT with an 8192-row position table
// trains at T = 8192, and its activation memory grows linearly in T. The CPU
// attention keeps one row of scores per thread, so nothing of size T x T may
// reach the allocator: a quadratic buffer would make the peak at T = 8192
// sixteen times the peak at T = 2048 instead of four.
//
// Measured through the CPU allocator's counters (memory_stats), so every
// tensor the forward and backward create counts, with the parameters and
// their gradients (allocated before the measurement) subtracted.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>

#include "dtrain/allocator.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/ops.h"
#include "nn_test_util.h"

using namespace dtrain;

namespace {

constexpr int64_t kLongT = 8192;

// One layer, two heads of 16: the attention's T x T work is what costs time.
nn::GPTConfig narrow_long_config() {
  nn::GPTConfig c;
  c.n_layer = 1;
  c.n_head = 2;
  c.n_embd = 32;
  c.vocab_size = 256;
  c.max_seq_len = kLongT;
  return c;
}

struct Run {
  float loss = 0.0f;
  double grad_sum_squares = 0.0;
  int64_t activation_peak = 0;  // peak bytes above what the model held before the step
};

// A fresh model (the same seed every time), one forward and backward at T,
// the allocator's peak above the bytes held before the step.
Run forward_backward_at(int64_t T) {
  nn::GPT model(narrow_long_config(), Device::cpu(), 7);
  const Tensor tokens = testing::random_tokens(1, T, model.config().vocab_size, 11);
  const Tensor targets = testing::random_tokens(1, T, model.config().vocab_size, 12);
  reset_peak_memory(Device::cpu());
  const int64_t base = memory_stats(Device::cpu()).current_bytes;
  Run r;
  r.loss = model.forward(tokens, targets);
  model.backward();
  r.activation_peak = memory_stats(Device::cpu()).peak_bytes - base;
  for (const auto& np : model.named_parameters()) {
    for (float g : np.param->grad.to_vector()) r.grad_sum_squares += static_cast<double>(g) * g;
  }
  return r;
}

}  // namespace

TEST_CASE("a GPT with max_seq_len 8192 builds, and longer sequences are refused with a message", "[nn][long_context]") {
  nn::GPT model(narrow_long_config(), Device::cpu(), 7);
  CHECK(model.embed.wpe.value.size(0) == kLongT);
  const Tensor too_long = testing::random_tokens(1, kLongT + 1, 256, 3);
  CHECK_THROWS_WITH(model.forward(too_long, too_long), Catch::Contains("max_seq_len 8192"));
}

TEST_CASE("CPU attention trains at T = 8192 with activation memory linear in T", "[nn][long_context]") {
  const Run short_run = forward_backward_at(kLongT / 4);
  const Run long_run = forward_backward_at(kLongT);
  const double ratio = static_cast<double>(long_run.activation_peak) / static_cast<double>(short_run.activation_peak);
  std::printf("activation peak: T=%lld %.2f MiB, T=%lld %.2f MiB, ratio %.2f (linear 4, quadratic 16)\n",
              static_cast<long long>(kLongT / 4), static_cast<double>(short_run.activation_peak) / (1 << 20),
              static_cast<long long>(kLongT), static_cast<double>(long_run.activation_peak) / (1 << 20), ratio);
  // A freshly initialised model predicts about uniformly: loss near ln(256).
  CHECK(std::isfinite(long_run.loss));
  CHECK(std::abs(long_run.loss - std::log(256.0f)) < 0.5f);
  CHECK(std::isfinite(long_run.grad_sum_squares));
  CHECK(long_run.grad_sum_squares > 0.0);
  // Linear: 4x the tokens, 4x the activations (a little less, as fixed-size
  // buffers count at both lengths). A T x T buffer of f32 alone would add
  // 256 MiB at T = 8192 against 16 MiB at T = 2048.
  CHECK(ratio > 2.0);
  CHECK(ratio < 5.0);
}
