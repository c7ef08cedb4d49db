// adamw_step and the global norm against direct formulas.
#include "op_test_util.h"

namespace dtrain::testing {
namespace {

struct RefState {
  Vec p, m, v;
};

void ref_adamw(RefState& s, const Vec& g, const ops::AdamWConfig& c, double wd) {
  const double bc1 = 1.0 - std::pow(static_cast<double>(c.beta1), static_cast<double>(c.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(c.beta2), static_cast<double>(c.step));
  for (size_t i = 0; i < s.p.size(); ++i) {
    const double gi = g[i] * c.grad_scale;
    s.m[i] = c.beta1 * s.m[i] + (1.0 - c.beta1) * gi;
    s.v[i] = c.beta2 * s.v[i] + (1.0 - c.beta2) * gi * gi;
    s.p[i] -= c.lr * ((s.m[i] / bc1) / (std::sqrt(s.v[i] / bc2) + c.eps) + wd * s.p[i]);
  }
}

}  // namespace

TEST_CASE("adamw_step matches the formula over several tensors and steps", "[ops][adamw]") {
  const int64_t sizes[] = {1, 7, 64, 100003};
  std::vector<ops::AdamWTensor> ts;
  std::vector<RefState> refs;
  std::vector<Vec> grads;
  uint32_t seed = 1;
  for (int64_t n : sizes) {
    ops::AdamWTensor t;
    const Vec p = random_vec(static_cast<size_t>(n), seed++);
    t.param = from_vec(p, {n});
    t.grad = Tensor::empty({n});
    t.exp_avg = Tensor::zeros({n});
    t.exp_avg_sq = Tensor::zeros({n});
    t.param_copy = Tensor::empty({n}, DType::bf16);
    t.weight_decay = n == 7 ? 0.0f : 0.1f;
    ts.push_back(t);
    refs.push_back({p, Vec(p.size(), 0.0), Vec(p.size(), 0.0)});
  }
  ts[2].param_copy = Tensor();  // optional
  ops::AdamWConfig cfg;
  cfg.lr = 1e-2f;
  cfg.grad_scale = 0.5f;
  for (int64_t step = 1; step <= 3; ++step) {
    cfg.step = step;
    for (size_t i = 0; i < ts.size(); ++i) {
      const Vec g = random_vec(static_cast<size_t>(ts[i].param.numel()), seed++, -2.0, 2.0);
      ts[i].grad.copy_(from_vec(g, {ts[i].param.numel()}));
      ref_adamw(refs[i], g, cfg, ts[i].weight_decay);
    }
    ops::adamw_step(ts, cfg);
  }
  for (size_t i = 0; i < ts.size(); ++i) {
    CAPTURE(i);
    CHECK_CLOSE(to_vec(ts[i].param), refs[i].p, 1e-6);
    CHECK_CLOSE(to_vec(ts[i].exp_avg), refs[i].m, 1e-6);
    CHECK_CLOSE(to_vec(ts[i].exp_avg_sq), refs[i].v, 1e-6);
    if (ts[i].param_copy.defined()) {
      const float* p = ts[i].param.data<float>();
      const auto* c = static_cast<const uint16_t*>(ts[i].param_copy.data_ptr());
      int bad = 0;
      for (int64_t j = 0; j < ts[i].param.numel(); ++j) bad += c[j] != float_to_bf16(p[j]);
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("adamw_step takes bf16 gradients", "[ops][adamw]") {
  const int64_t n = 33;
  const Vec p = random_vec(n, 1), g = random_vec(n, 2);
  ops::AdamWTensor t;
  t.param = from_vec(p, {n});
  t.grad = from_vec(g, {n}, DType::bf16);
  t.exp_avg = Tensor::zeros({n});
  t.exp_avg_sq = Tensor::zeros({n});
  t.weight_decay = 0.01f;
  std::vector<ops::AdamWTensor> ts{t};
  ops::AdamWConfig cfg;
  ops::adamw_step(ts, cfg);
  RefState ref{p, Vec(n, 0.0), Vec(n, 0.0)};
  ref_adamw(ref, to_vec(t.grad), cfg, 0.01);
  CHECK_CLOSE(to_vec(t.param), ref.p, 1e-6);
}

TEST_CASE("adamw_step validates its arguments", "[ops][adamw][validation]") {
  const auto make = [] {
    ops::AdamWTensor t;
    t.param = Tensor::zeros({4});
    t.grad = Tensor::zeros({4});
    t.exp_avg = Tensor::zeros({4});
    t.exp_avg_sq = Tensor::zeros({4});
    return t;
  };
  ops::AdamWConfig cfg;
  const auto run = [&](const ops::AdamWTensor& bad, const ops::AdamWConfig& c) {
    std::vector<ops::AdamWTensor> ts{make(), bad};
    ops::adamw_step(ts, c);
  };
  ops::AdamWTensor t = make();
  t.grad = Tensor::zeros({5});
  check_error([&] { run(t, cfg); }, {"adamw_step", "'tensors[1].grad'", "[4]", "[5]"});
  t = make();
  t.exp_avg = Tensor();
  check_error([&] { run(t, cfg); }, {"'tensors[1].exp_avg'", "undefined"});
  t = make();
  t.param = Tensor::zeros({4}, DType::bf16);
  check_error([&] { run(t, cfg); }, {"'tensors[1].param'", "dtype", "f32"});
  t = make();
  t.grad = Tensor::zeros({4}, DType::f16);
  check_error([&] { run(t, cfg); }, {"'tensors[1].grad'", "f32 or bf16", "f16"});
  t = make();
  t.exp_avg_sq = Tensor::zeros({4}, DType::bf16);
  check_error([&] { run(t, cfg); }, {"'tensors[1].exp_avg_sq'", "dtype"});
  t = make();
  t.param_copy = Tensor::zeros({4});
  check_error([&] { run(t, cfg); }, {"'tensors[1].param_copy'", "bf16"});
  t = make();
  t.param_copy = Tensor::zeros({3}, DType::bf16);
  check_error([&] { run(t, cfg); }, {"'tensors[1].param_copy'", "shape"});
  t = make();
  t.grad = t.param;
  check_error([&] { run(t, cfg); }, {"'tensors[1].grad'", "overlaps", "'tensors[1].param'"});
  t = make();
  t.param = fake_cuda({4});
  check_error([&] { run(t, cfg); }, {"'tensors[1].param'", "device"});
  t = make();
  t.exp_avg = fake_cuda({4});
  check_error([&] { run(t, cfg); }, {"'tensors[1].exp_avg'", "device"});
  t = make();
  t.weight_decay = NAN;
  check_error([&] { run(t, cfg); }, {"weight_decay"});
  ops::AdamWConfig bad = cfg;
  bad.step = 0;
  check_error([&] { run(make(), bad); }, {"'step'", ">= 1", "got 0"});
  bad = cfg;
  bad.beta1 = 1.0f;
  check_error([&] { run(make(), bad); }, {"'beta1'"});
  bad = cfg;
  bad.beta2 = -0.5f;
  check_error([&] { run(make(), bad); }, {"'beta2'"});
  bad = cfg;
  bad.eps = -1.0f;
  check_error([&] { run(make(), bad); }, {"'eps'"});
  bad = cfg;
  bad.lr = NAN;
  check_error([&] { run(make(), bad); }, {"'lr'"});
  bad = cfg;
  bad.grad_scale = INFINITY;
  check_error([&] { run(make(), bad); }, {"'grad_scale'"});
  std::vector<ops::AdamWTensor> empty;
  ops::adamw_step(empty, cfg);  // nothing to do, no error
}

TEST_CASE("global_norm_squared and global_norm sum squares over many tensors", "[ops][global_norm]") {
  std::vector<Tensor> ts;
  double ref = 0.0;
  uint32_t seed = 3;
  for (int64_t n : {1, 5, 1000, 200003}) {
    const Vec v = random_vec(static_cast<size_t>(n), seed++);
    for (double x : v) ref += x * x;
    ts.push_back(from_vec(v, {n}));
  }
  const Vec bv = random_vec(77, seed++);
  ts.push_back(from_vec(bv, {7, 11}, DType::bf16));
  for (double x : to_vec(ts.back())) ref += x * x;
  Tensor out = Tensor::full({1}, NAN);
  ops::global_norm_squared(out, ts);
  CHECK(out.item(0) == Approx(ref).epsilon(1e-6));
  CHECK(ops::global_norm(ts) == Approx(std::sqrt(ref)).epsilon(1e-6));
  CHECK(ops::global_norm({}) == 0.0f);
  Tensor none;
  check_error(
      [&] {
        ops::global_norm_squared(out, {ts[0], none});
      },
      {"global_norm_squared", "'tensors[1]'", "undefined"});
  check_error([&] { ops::global_norm_squared(out, {Tensor::zeros({2}, DType::i32)}); }, {"'tensors[0]'", "dtype"});
  check_error(
      [&] {
        Tensor o = Tensor::zeros({2});
        ops::global_norm_squared(o, ts);
      },
      {"'out'", "[1]", "[2]"});
  check_error(
      [&] {
        Tensor o = Tensor::zeros({1}, DType::bf16);
        ops::global_norm_squared(o, ts);
      },
      {"'out'", "dtype"});
  check_error([&] { ops::global_norm_squared(out, {fake_cuda({3})}); }, {"'tensors[0]'", "device"});
  check_error(
      [&] {
        Tensor o = ts[2].narrow(0, 1);
        ops::global_norm_squared(o, ts);
      },
      {"'out'", "overlaps"});
}

}  // namespace dtrain::testing
