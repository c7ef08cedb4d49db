// Module tree, parameter naming, hooks and parameter rebinding.
#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "dtrain/optim/adamw.h"
#include "nn_test_util.h"
#include "test_support.h"

using namespace dtrain;

TEST_CASE("parameters have stable dotted names in execution order", "[nn][module]") {
  nn::GPT model(testing::micro_config());
  const auto params = model.named_parameters();
  std::vector<std::string> names;
  names.reserve(params.size());
  for (auto& np : params) names.push_back(np.name);
  REQUIRE(names.front() == "embed.wte");
  REQUIRE(names[1] == "embed.wpe");
  CHECK(std::find(names.begin(), names.end(), "blocks.0.attn.qkv.weight") != names.end());
  CHECK(std::find(names.begin(), names.end(), "blocks.1.mlp.proj.bias") != names.end());
  CHECK(names.back() == "ln_f.bias");
  // The tied head owns nothing: wte appears once.
  CHECK(std::count(names.begin(), names.end(), "embed.wte") == 1);
  CHECK(model.head.shared_parameters().size() == 1);
  CHECK(model.head.shared_parameters()[0] == &model.embed.wte);
  // Same order on a second model and on a second call.
  nn::GPT again(testing::micro_config());
  const auto params2 = again.named_parameters();
  REQUIRE(params2.size() == params.size());
  for (size_t i = 0; i < params.size(); ++i) CHECK(params2[i].name == params[i].name);
  CHECK(&model.parameter("blocks.1.ln2.weight") == &model.blocks[1]->ln2.weight);
  CHECK_THROWS_WITH(model.parameter("blocks.9.nope"), Catch::Contains("no parameter named 'blocks.9.nope'"));
  // Weight decay only on matrices and embeddings.
  CHECK(model.parameter("blocks.0.attn.qkv.weight").weight_decay());
  CHECK_FALSE(model.parameter("blocks.0.attn.qkv.bias").weight_decay());
  CHECK_FALSE(model.parameter("blocks.0.ln1.weight").weight_decay());
  CHECK(model.parameter("embed.wte").weight_decay());
  // Parameter count: the GPT-2 formula for these dimensions.
  const nn::GPTConfig c = testing::micro_config();
  const int64_t C = c.n_embd;
  const int64_t per_block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C);
  CHECK(model.num_parameters() == c.vocab_size * C + c.max_seq_len * C + c.n_layer * per_block + 2 * C);
}

TEST_CASE("GPT-2 initialisation: scaled residual projections, unit gains, zero biases", "[nn][module]") {
  nn::GPTConfig c = testing::micro_config();
  c.n_embd = 64;
  c.n_layer = 8;
  nn::GPT model(c, Device::cpu(), 5);
  auto stddev = [](const Tensor& t) {
    double s = 0, s2 = 0;
    const auto v = t.to_vector();
    for (float x : v) s += x, s2 += static_cast<double>(x) * x;
    const double m = s / static_cast<double>(v.size());
    return std::sqrt(s2 / static_cast<double>(v.size()) - m * m);
  };
  CHECK(stddev(model.parameter("blocks.0.mlp.fc.weight").value) == Approx(0.02).epsilon(0.05));
  CHECK(stddev(model.parameter("blocks.0.mlp.proj.weight").value) == Approx(0.02 / std::sqrt(16.0)).epsilon(0.05));
  CHECK(stddev(model.parameter("blocks.3.attn.proj.weight").value) == Approx(0.02 / std::sqrt(16.0)).epsilon(0.05));
  CHECK(model.parameter("blocks.0.ln1.weight").value.to_vector() == std::vector<float>(64, 1.0f));
  CHECK(model.parameter("blocks.0.attn.qkv.bias").value.to_vector() == std::vector<float>(192, 0.0f));
  // Same seed, same weights; another seed, other weights.
  nn::GPT same(c, Device::cpu(), 5), other(c, Device::cpu(), 6);
  CHECK(same.embed.wte.value.to_vector() == model.embed.wte.value.to_vector());
  CHECK(other.embed.wte.value.to_vector() != model.embed.wte.value.to_vector());
}

TEST_CASE("grad-ready hooks fire once per parameter in the order gradients complete", "[nn][hooks]") {
  const bool checkpointing = GENERATE(false, true);
  nn::GPTConfig c = testing::micro_config();
  c.checkpoint_activations = checkpointing;
  nn::GPT model(c);
  std::vector<nn::Parameter*> ready;
  model.add_grad_ready_hook([&](nn::Parameter& p) { ready.push_back(&p); });
  // A hook on a sub-module sees only its subtree.
  std::vector<nn::Parameter*> block1_ready;
  model.blocks[1]->add_grad_ready_hook([&](nn::Parameter& p) { block1_ready.push_back(&p); });

  // The gradient reported ready must not change afterwards: snapshot it when the hook fires.
  std::map<nn::Parameter*, std::vector<float>> at_ready;
  model.add_grad_ready_hook([&](nn::Parameter& p) { at_ready[&p] = p.grad.to_vector(); });

  const Tensor tokens = testing::random_tokens(2, 6, c.vocab_size, 1);
  for (int step = 0; step < 2; ++step) {
    ready.clear();
    block1_ready.clear();
    at_ready.clear();
    model.zero_grad();
    model.forward(tokens, tokens);
    model.backward();
    const auto all = model.parameters();
    REQUIRE(ready.size() == all.size());
    CHECK(std::set<nn::Parameter*>(ready.begin(), ready.end()).size() == all.size());
    CHECK(block1_ready.size() == model.blocks[1]->parameters().size());
    for (auto* p : all) CHECK(at_ready[p] == p->grad.to_vector());
    // Backward order: final LayerNorm first, then the last block, ..., the embedding last.
    CHECK(ready.front() == &model.ln_f.weight);
    CHECK(ready.back() == &model.embed.wpe);
    CHECK(ready[ready.size() - 2] == &model.embed.wte);  // tied: complete only after the embedding adds its part
    auto index = [&](nn::Parameter* p) { return std::find(ready.begin(), ready.end(), p) - ready.begin(); };
    CHECK(index(&model.blocks[1]->ln1.weight) < index(&model.blocks[0]->mlp.proj.weight));
    CHECK(index(&model.blocks[0]->mlp.proj.weight) < index(&model.blocks[0]->attn.qkv.weight));
  }
}

TEST_CASE("module hooks bracket forward and backward", "[nn][hooks]") {
  const bool checkpointing = GENERATE(false, true);
  nn::GPTConfig c = testing::micro_config();
  c.checkpoint_activations = checkpointing;
  nn::GPT model(c);
  std::vector<std::string> events;
  nn::Linear& qkv = model.blocks[0]->attn.qkv;
  bool weight_ready = false;
  model.add_grad_ready_hook([&](nn::Parameter& p) {
    if (&p == &qkv.weight) weight_ready = true;
  });
  qkv.add_hook(nn::HookPoint::pre_forward, [&](nn::Module&) { events.push_back("pre_forward"); });
  qkv.add_hook(nn::HookPoint::post_forward, [&](nn::Module&) { events.push_back("post_forward"); });
  qkv.add_hook(nn::HookPoint::pre_backward, [&](nn::Module& m) {
    CHECK(&m == &qkv);
    CHECK_FALSE(weight_ready);
    events.push_back("pre_backward");
  });
  const int id = qkv.add_hook(nn::HookPoint::post_backward, [&](nn::Module&) {
    CHECK(weight_ready);
    events.push_back("post_backward");
  });
  const Tensor tokens = testing::random_tokens(2, 4, c.vocab_size, 1);
  model.forward(tokens, tokens);
  model.backward();
  std::vector<std::string> expected = {"pre_forward", "post_forward"};
  if (checkpointing) expected.insert(expected.end(), {"pre_forward", "post_forward"});  // the recompute
  expected.insert(expected.end(), {"pre_backward", "post_backward"});
  CHECK(events == expected);

  // A released parameter value fails with a message that says what to do.
  qkv.remove_hook(id);
  CHECK_THROWS_WITH(qkv.remove_hook(id), Catch::Contains("no hook with id"));
  Tensor saved = qkv.weight.value;
  qkv.weight.value = Tensor();
  CHECK_THROWS_WITH(model.forward(tokens, tokens), Catch::Contains("gather it before the module runs"));
  qkv.weight.value = saved;
  CHECK_NOTHROW(model.forward(tokens, tokens));
}

TEST_CASE("parameters rebound into flat buffers train exactly as before", "[nn][rebind]") {
  const nn::GPTConfig c = testing::micro_config();
  nn::GPT reference(c, Device::cpu(), 9);
  nn::GPT flat_model(c, Device::cpu(), 9);
  // What a data-parallel engine does: one flat value and one flat grad
  // buffer, each parameter a view into them.
  const int64_t total = flat_model.num_parameters();
  Tensor flat_value = Tensor::empty({total});
  Tensor flat_grad = Tensor::zeros({total});
  int64_t offset = 0;
  for (auto* p : flat_model.parameters()) {
    p->rebind(flat_value.narrow(offset, p->numel()).reshape(p->shape()),
              flat_grad.narrow(offset, p->numel()).reshape(p->shape()));
    offset += p->numel();
  }
  CHECK_THROWS_WITH(flat_model.embed.wte.rebind_value(Tensor::zeros({3})), Catch::Contains("expected f32"));
  // The optimizer sees one (value, grad) pair: the whole flat buffer.
  optim::AdamW flat_opt({{"all", {{flat_value, flat_grad, "flat"}}, 0.0f, 1.0f}});
  optim::AdamW ref_opt(optim::param_groups(reference, 0.0f));
  const Tensor tokens = testing::random_tokens(2, 6, c.vocab_size, 3);
  for (int step = 0; step < 3; ++step) {
    reference.zero_grad();
    flat_model.zero_grad();
    const float a = reference.forward(tokens, tokens);
    const float b = flat_model.forward(tokens, tokens);
    CHECK(a == b);
    reference.backward();
    flat_model.backward();
    ref_opt.step(1e-2f);
    flat_opt.step(1e-2f);
  }
  const auto ref_params = reference.parameters();
  const auto flat_params = flat_model.parameters();
  for (size_t i = 0; i < ref_params.size(); ++i) {
    CHECK(flat_params[i]->value.shares_storage(flat_value));
    CHECK(flat_params[i]->value.to_vector() == ref_params[i]->value.to_vector());
  }
}
