// The tiny preset learns the built-in additions' format quickly: the loss falls
// below a stated value within 300 steps and held-out answer digits beat the
// format-only baseline. Learning to add (held-out sums answered exactly)
// takes ~1000 steps and is asserted on the README's main job (tests/mainjob).
#include <catch2/catch.hpp>
#include <cstdio>

#include "dtrain/data/addition_dataset.h"
#include "dtrain/data/data_loader.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/optim/clip.h"
#include "dtrain/optim/schedule.h"
#include "nn_test_util.h"
#include "test_support.h"

using namespace dtrain;

TEST_CASE("the tiny GPT learns held-out additions", "[nn][training]") {
  constexpr int64_t kSteps = 300;
  constexpr int64_t kBatch = 16, kSeq = 60;  // rows start at line starts (10-character lines)
  // Lines like "37+58=590\n": the operands are random (2 ln 100 = 9.2 nats a
  // line that no model can predict: a floor of 0.92 per token). Knowing the
  // format but not how to add costs ~5.3 more nats for the answer: ~1.45 per
  // token. Measured at step 300: 1.382 (the format learned, the carries not
  // yet); 1.42 leaves a margin and is still far below ln 256 = 5.5.
  constexpr float kTargetLoss = 1.42f;
  nn::GPT model(nn::GPTConfig::preset("tiny"), Device::cpu(), 1337);
  data::AdditionDataset additions(2);
  data::DataLoader loader({std::make_shared<data::MemoryTokens>(additions.train_tokens(40000, 1), "additions")}, kBatch,
                          kSeq);
  optim::AdamW opt(optim::param_groups(model, 0.1f));
  const optim::CosineSchedule schedule{3e-3f, 3e-4f, 15, kSteps};
  float first = 0.0f, last = 0.0f;
  for (int64_t step = 0; step < kSteps; ++step) {
    const data::Batch& b = loader.next();
    model.zero_grad();
    last = model.forward(b.inputs, b.targets);
    if (step == 0) first = last;
    model.backward();
    opt.step(schedule.lr(step), optim::clip_scale(optim::grad_norm(opt.grads()), 1.0f));
  }
  // 400 held-out sums: with 100 the format-only baseline itself moves by
  // ~0.04 from set to set, and the margin below was within that noise.
  const auto pairs = additions.held_out(400, 3);
  const auto baseline = additions.baseline(pairs);
  const auto score = additions.evaluate(pairs, [&](const auto& prompts, int64_t max_new) {
    return nn::generate_greedy_batch(model, prompts, max_new, '\n');
  });
  std::printf(
      "tiny GPT on additions: loss %.3f -> %.3f in %lld steps; held-out exact %.2f, digits %.2f "
      "(format-only baseline %.2f)\n",
      first, last, static_cast<long long>(kSteps), score.exact, score.digits, baseline.digits);
  CHECK(first > 4.0f);  // ~ln 256 at initialisation
  CHECK(last < kTargetLoss);
  // Measured with OMP_NUM_THREADS=1 (as ctest runs it): digits 0.34 (AVX2
  // kernels) and 0.32 (AVX-512) against a baseline of 0.24. The two kernel
  // sets round differently, so the runs differ from the first step on.
  CHECK(score.digits > baseline.digits + 0.05);
}
