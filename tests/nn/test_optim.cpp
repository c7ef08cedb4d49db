// Optimizers, schedule and clipping against hand-computed references.
#include <catch2/catch.hpp>
#include <cmath>

#include "dtrain/optim/adamw.h"
#include "dtrain/optim/clip.h"
#include "dtrain/optim/schedule.h"
#include "dtrain/optim/sgd.h"
#include "nn_test_util.h"
#include "test_support.h"

using namespace dtrain;

TEST_CASE("AdamW matches the reference update", "[optim]") {
  Tensor w = Tensor::from_vector({0.5f, -1.0f, 2.0f}, {3});
  Tensor g = Tensor::zeros({3});
  optim::AdamWOptions o;
  o.beta1 = 0.9f;
  o.beta2 = 0.99f;
  optim::AdamW opt({{"g", {{w, g, "w"}}, 0.1f, 1.0f}}, o);
  std::vector<double> p = {0.5, -1.0, 2.0}, m(3, 0.0), v(3, 0.0);
  const std::vector<std::vector<float>> grads = {{0.1f, -0.2f, 0.3f}, {0.05f, 0.0f, -0.3f}, {1.0f, 1.0f, 1.0f}};
  const double lr = 0.01, gscale = 0.5;
  for (int t = 1; t <= 3; ++t) {
    g.copy_(Tensor::from_vector(grads[t - 1], {3}));
    opt.step(static_cast<float>(lr), static_cast<float>(gscale));
    for (int i = 0; i < 3; ++i) {
      const double gi = grads[t - 1][i] * gscale;
      m[i] = 0.9 * m[i] + 0.1 * gi;
      v[i] = 0.99 * v[i] + 0.01 * gi * gi;
      const double mhat = m[i] / (1 - std::pow(0.9, t)), vhat = v[i] / (1 - std::pow(0.99, t));
      p[i] -= lr * (mhat / (std::sqrt(vhat) + 1e-8) + 0.1 * p[i]);
    }
  }
  CHECK(opt.steps_done() == 3);
  for (int i = 0; i < 3; ++i) CHECK(w.item(i) == Approx(p[i]).epsilon(1e-5));
  const auto st = opt.state();
  REQUIRE(st.size() == 2);
  CHECK(st[0].first == "w.exp_avg");
  CHECK(st[0].second.item(2) == Approx(m[2]).epsilon(1e-5));
}

TEST_CASE("SGD with momentum matches the reference update", "[optim]") {
  Tensor w = Tensor::from_vector({1.0f, -2.0f}, {2});
  Tensor g = Tensor::zeros({2});
  optim::SGD opt({{"g", {{w, g, "w"}}, 0.01f, 2.0f}}, 0.9f);
  std::vector<double> p = {1.0, -2.0}, buf(2, 0.0);
  const double lr = 0.1, group_lr = lr * 2.0;
  for (int t = 0; t < 3; ++t) {
    const std::vector<float> gv = {0.5f * static_cast<float>(t + 1), -0.25f};
    g.copy_(Tensor::from_vector(gv, {2}));
    opt.step(static_cast<float>(lr));
    for (int i = 0; i < 2; ++i) {
      p[i] *= 1 - group_lr * 0.01;
      buf[i] = 0.9 * buf[i] + gv[i];
      p[i] -= group_lr * buf[i];
    }
  }
  for (int i = 0; i < 2; ++i) CHECK(w.item(i) == Approx(p[i]).epsilon(1e-5));
  CHECK_THROWS_WITH(optim::SGD({}, 1.5f), Catch::Contains("momentum must lie in [0, 1)"));
}

TEST_CASE("optimizers refuse mismatched pairs", "[optim]") {
  Tensor w = Tensor::zeros({3});
  CHECK_THROWS_WITH(optim::AdamW({{"g", {{w, Tensor::zeros({4}), "w"}}, 0.0f, 1.0f}}), Catch::Contains("has value"));
  CHECK_THROWS_WITH(optim::AdamW({{"g", {{w, Tensor(), "w"}}, 0.0f, 1.0f}}), Catch::Contains("defined value and grad"));
}

TEST_CASE("param_groups split decay and no-decay parameters", "[optim]") {
  nn::GPT model(testing::micro_config());
  const auto groups = optim::param_groups(model, 0.1f);
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].name == "decay");
  CHECK(groups[0].weight_decay == 0.1f);
  CHECK(groups[1].weight_decay == 0.0f);
  size_t n = 0;
  for (auto& g : groups) {
    n += g.params.size();
    for (auto& p : g.params) CHECK(p.value.shares_storage(model.parameter(p.name).value));
  }
  CHECK(n == model.parameters().size());
}

TEST_CASE("cosine schedule with warm-up", "[optim]") {
  optim::CosineSchedule s{1.0f, 0.1f, 10, 110};
  CHECK(s.lr(0) == Approx(0.1));
  CHECK(s.lr(9) == Approx(1.0));
  CHECK(s.lr(10) == Approx(1.0));
  CHECK(s.lr(60) == Approx(0.55));
  CHECK(s.lr(110) == Approx(0.1));
  CHECK(s.lr(500) == Approx(0.1));
  for (int i = 11; i < 110; ++i) CHECK(s.lr(i) <= s.lr(i - 1));
}

TEST_CASE("global-norm clipping", "[optim]") {
  Tensor a = Tensor::from_vector({3.0f, 0.0f}, {2});
  Tensor b = Tensor::from_vector({4.0f}, {1});
  CHECK(optim::grad_norm({a, b}) == Approx(5.0));
  CHECK(optim::grad_norm_squared({a, b}) == Approx(25.0));
  CHECK(optim::clip_scale(5.0f, 10.0f) == 1.0f);
  CHECK(optim::clip_scale(5.0f, 0.0f) == 1.0f);
  CHECK(optim::clip_scale(5.0f, 1.0f) == Approx(0.2));
  CHECK_THROWS_WITH(optim::clip_scale(NAN, 1.0f), Catch::Contains("not finite"));
  const float before = optim::clip_grad_norm({a, b}, 1.0f);
  CHECK(before == Approx(5.0));
  CHECK(optim::grad_norm({a, b}) == Approx(1.0).epsilon(1e-4));
  CHECK(a.item(0) == Approx(0.6).epsilon(1e-4));
}
