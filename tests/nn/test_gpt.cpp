// GPT configuration errors, determinism, sampling.
#include <catch2/catch.hpp>
#include <cmath>

#include "check_close.h"
#include "dtrain/data/addition_dataset.h"
#include "dtrain/data/byte_tokenizer.h"
#include "dtrain/data/data_loader.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/optim/clip.h"
#include "nn_test_util.h"
#include "test_support.h"

using namespace dtrain;

TEST_CASE("bad GPT configurations are refused with clear errors", "[nn][config]") {
  nn::GPTConfig c = testing::micro_config();
  c.n_head = 3;  // does not divide 8
  CHECK_THROWS_WITH(nn::GPT(c), Catch::Contains("3 heads do not divide the width n_embd=8"));
  CHECK_THROWS_WITH(nn::CausalSelfAttention(10, 4), Catch::Contains("4 heads do not divide the width 10"));
  c = testing::micro_config();
  c.n_layer = 0;
  CHECK_THROWS_WITH(nn::GPT(c), Catch::Contains("n_layer must be positive"));
  c = testing::micro_config();
  c.vocab_size = -1;
  CHECK_THROWS_WITH(nn::GPT(c), Catch::Contains("vocab_size must be positive"));
  CHECK_THROWS_WITH(nn::GPTConfig::preset("gpt5"), Catch::Contains("known presets: tiny gpt2-124m gpt2-350m"));

  nn::GPT model(testing::micro_config());
  // Context longer than the position table.
  const Tensor long_tokens = testing::random_tokens(1, 9, 11, 1);
  CHECK_THROWS_WITH(model.forward(long_tokens), Catch::Contains("longer than the position table"));
  CHECK_THROWS_WITH(model.forward(long_tokens, long_tokens), Catch::Contains("longer than the position table"));
  // Wrong dtype, mismatched targets, nothing to learn from, backward without forward.
  const Tensor tokens = testing::random_tokens(2, 4, 11, 1);
  CHECK_THROWS_WITH(model.forward(Tensor::zeros({2, 4})), Catch::Contains("must be i32 [B, T]"));
  CHECK_THROWS_WITH(model.forward(tokens, testing::random_tokens(2, 3, 11, 1)), Catch::Contains("same shape"));
  Tensor ignored = Tensor::full({2, 4}, -100, DType::i32);
  CHECK_THROWS_WITH(model.forward(tokens, ignored), Catch::Contains("nothing to learn from"));
  nn::GPT fresh(testing::micro_config());
  CHECK_THROWS_WITH(fresh.backward(), Catch::Contains("needs a training forward"));
}

TEST_CASE("presets have the GPT-2 shapes", "[nn][config]") {
  const auto small = nn::GPTConfig::preset("gpt2-124m");
  CHECK(small.n_layer == 12);
  CHECK(small.n_embd == 768);
  CHECK(small.n_head == 12);
  CHECK(small.vocab_size == 50257);
  const auto medium = nn::GPTConfig::preset("gpt2-350m");
  CHECK(medium.n_layer == 24);
  CHECK(medium.n_embd == 1024);
  const auto tiny = nn::GPTConfig::preset("tiny");
  CHECK(tiny.vocab_size == 256);
  CHECK_NOTHROW(tiny.validate());
}

namespace {
// A few AdamW steps of the tiny preset on the built-in data; returns the losses.
std::vector<float> run_losses(uint64_t seed, bool checkpointing) {
  nn::GPTConfig c = nn::GPTConfig::preset("tiny");
  c.n_embd = 64;
  c.checkpoint_activations = checkpointing;
  nn::GPT model(c, Device::cpu(), seed);
  data::AdditionDataset additions(2);
  data::DataLoader loader({std::make_shared<data::MemoryTokens>(additions.train_tokens(2000, seed), "additions")}, 4,
                          32);
  optim::AdamW opt(optim::param_groups(model, 0.1f));
  std::vector<float> losses;
  for (int step = 0; step < 4; ++step) {
    const data::Batch& b = loader.next();
    model.zero_grad();
    losses.push_back(model.forward(b.inputs, b.targets));
    model.backward();
    const float norm = optim::grad_norm(opt.grads());
    opt.step(3e-3f, optim::clip_scale(norm, 1.0f));
  }
  return losses;
}
}  // namespace

TEST_CASE("same seed and data give bitwise identical loss sequences", "[nn][determinism]") {
  const auto a = run_losses(42, false);
  const auto b = run_losses(42, false);
  CHECK(a == b);                     // exact: no tolerance
  CHECK(run_losses(42, true) == a);  // recomputation changes nothing
  CHECK(run_losses(43, false) != a);
  CHECK(a.back() < a.front());
}

TEST_CASE("generation: greedy is deterministic, batch equals one by one, context is respected", "[nn][generate]") {
  nn::GPTConfig c = testing::micro_config();
  c.vocab_size = 256;
  nn::GPT model(c, Device::cpu(), 4);
  testing::perturb_parameters(model, 0.5f, 3);
  std::mt19937_64 rng(1);
  const std::vector<int32_t> p1 = {'1', '+'}, p2 = {'7', '7', '+', '3'};
  const auto g1 = nn::generate(model, p1, 4, 0.0f, rng);
  CHECK(g1.size() == 4);
  CHECK(nn::generate(model, p1, 4, 0.0f, rng) == g1);
  const auto g2 = nn::generate(model, p2, 4, 0.0f, rng);
  const auto batch = nn::generate_greedy_batch(model, {p1, p2}, 4);
  REQUIRE(batch.size() == 2);
  CHECK(batch[0] == g1);
  CHECK(batch[1] == g2);
  // Sampling with temperature stays in the vocabulary, and runs past the context by cropping.
  const auto sampled = nn::generate(model, p1, 20, 1.0f, rng);
  CHECK(sampled.size() == 20);
  for (int32_t t : sampled) CHECK((t >= 0 && t < 256));
  CHECK_THROWS_WITH(nn::generate_greedy_batch(model, {p2}, 8), Catch::Contains("do not fit the context"));
  CHECK_THROWS_WITH(nn::generate(model, {}, 3, 0.0f, rng), Catch::Contains("prompt is empty"));
}

TEST_CASE("GPT on CUDA matches the CPU model", "[nn][gpu]") {
  testing::require_gpu_or_skip();
  nn::GPTConfig c = nn::GPTConfig::preset("tiny");
  c.n_embd = 64;
  nn::GPT cpu_model(c, Device::cpu(), 5), gpu_model(c, Device::cuda(), 5);
  const Tensor tokens = testing::random_tokens(4, 32, c.vocab_size, 1);
  const Tensor targets = testing::random_tokens(4, 32, c.vocab_size, 2);
  const float cpu_loss = cpu_model.forward(tokens, targets);
  const float gpu_loss = gpu_model.forward(tokens, targets);  // CPU batches are copied to the device
  CHECK(gpu_loss == Approx(cpu_loss).epsilon(1e-3));
  cpu_model.backward();
  gpu_model.backward();
  const auto pc = cpu_model.named_parameters(), pg = gpu_model.named_parameters();
  for (size_t i = 0; i < pc.size(); ++i) {
    INFO(pc[i].name);
    // f32 on the GPU may use TF32 tensor cores: 1e-2 of the largest gradient.
    CHECK_CLOSE(pg[i].param->grad.to(Device::cpu()), pc[i].param->grad, 1e-2, 0.0);
  }
  optim::AdamW opt(optim::param_groups(gpu_model, 0.1f));
  opt.step(1e-3f, optim::clip_scale(optim::grad_norm(opt.grads()), 1.0f));
  const float after = gpu_model.forward(tokens, targets);
  CHECK(std::isfinite(after));
  std::mt19937_64 rng(1);
  CHECK(nn::generate(gpu_model, {'1', '+'}, 3, 0.0f, rng).size() == 3);
}
