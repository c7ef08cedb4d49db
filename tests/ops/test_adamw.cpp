// adamw_step's bf16 copies, argument validation, and global_norm (values
// against the formulas: the op case registry, tests/op_cases/adamw.cpp and
// global_norm.cpp).
#include "op_case.h"
#include "op_test_util.h"

namespace dtrain::testing {
TEST_CASE("adamw_step's bf16 copy is the new parameter rounded, bit for bit", "[ops][adamw]") {
  // The registry's cases (tests/op_cases/adamw.cpp) check values against the
  // formula; here: every copy equals dtype.h's rounding of the parameter.
  for (const op_cases::OpCase& c : op_cases::test_cases("adamw")) {
    CAPTURE(c.label);
    op_cases::Bound b = op_cases::bind(c, DType::f32, Device::cpu());
    c.forward(b);
    int copies = 0;
    for (const auto& [name, copy] : b.tensors) {
      if (name.rfind("param_copy", 0) != 0 || !copy.defined()) continue;
      const Tensor& param = b.at("param" + name.substr(10));
      const auto* bits = static_cast<const uint16_t*>(copy.data_ptr());
      int bad = 0;
      for (int64_t j = 0; j < param.numel(); ++j) bad += bits[j] != float_to_bf16(param.data<float>()[j]);
      CHECK(bad == 0);
      ++copies;
    }
    if (c.label.rfind("6 tensors", 0) == 0) CHECK(copies == 3);
  }
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
