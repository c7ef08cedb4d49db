// adamw_step's bf16 copies, argument validation, its device gradient scale,
// clip_coefficient, and global_norm (values against the formulas: the op
// case registry, tests/op_cases/adamw.cpp, clip_coefficient.cpp and
// global_norm.cpp).
#include "dtrain/optim/clip.h"
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
  t.grad = Tensor::zeros({4}, DType::i32);
  check_error([&] { run(t, cfg); }, {"'tensors[1].grad'", "f32, bf16 or f16", "i32"});
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

TEST_CASE("adamw_step's device gradient scale gives the bits of the same host scale", "[ops][adamw]") {
  // The engine's norm-on-device path (AdamWConfig::device_grad_scale) must
  // not change a bit against the host path it replaces.
  const auto state = [](float v0) {
    ops::AdamWTensor t;
    t.param = Tensor::from_vector({0.3f, -1.2f, 2.5f, v0, 0.01f}, {5});
    t.grad = Tensor::from_vector({0.7f, -0.2f, 1e-3f, 3.0f, -5.0f}, {5}, DType::bf16);
    t.exp_avg = Tensor::from_vector({0.1f, 0.0f, -0.3f, 0.2f, 0.05f}, {5});
    t.exp_avg_sq = Tensor::from_vector({0.01f, 0.0f, 0.2f, 0.04f, 0.5f}, {5});
    t.weight_decay = 0.1f;
    return t;
  };
  const float coefficient = 0.37f / 1024.0f;
  std::vector<ops::AdamWTensor> host{state(0.9f)}, device{state(0.9f)};
  ops::AdamWConfig cfg;
  cfg.step = 3;
  cfg.grad_scale = coefficient;
  ops::adamw_step(host, cfg);
  cfg.grad_scale = 1.0f;
  cfg.device_grad_scale = Tensor::from_vector({coefficient}, {1});
  ops::adamw_step(device, cfg);
  for (int64_t i = 0; i < 5; ++i) {
    CHECK(host[0].param.data<float>()[i] == device[0].param.data<float>()[i]);
    CHECK(host[0].exp_avg_sq.data<float>()[i] == device[0].exp_avg_sq.data<float>()[i]);
  }
  cfg.device_grad_scale = Tensor::zeros({2});
  check_error([&] { ops::adamw_step(device, cfg); }, {"adamw_step", "'device_grad_scale'", "[1]", "[2]"});
  cfg.device_grad_scale = Tensor::zeros({1}, DType::bf16);
  check_error([&] { ops::adamw_step(device, cfg); }, {"'device_grad_scale'", "f32"});
}

TEST_CASE("clip_coefficient follows the host clip_scale bit for bit and validates", "[ops][adamw]") {
  for (float sq : {0.0f, 0.04f, 1.0f, 7.3f, 1e6f}) {
    for (float max_norm : {0.0f, 0.5f, 2.0f}) {
      for (float loss_scale : {1.0f, 1024.0f}) {
        Tensor in = Tensor::from_vector({sq}, {1}), out = Tensor::empty({1});
        ops::clip_coefficient(out, in, max_norm, loss_scale);
        const float norm = std::sqrt(sq) / loss_scale;
        CHECK(out.data<float>()[0] == optim::clip_scale(norm, max_norm) / loss_scale);
      }
    }
  }
  Tensor out = Tensor::empty({1});
  ops::clip_coefficient(out, Tensor::from_vector({INFINITY}, {1}), 1.0f, 1.0f);
  CHECK(std::isnan(out.data<float>()[0]));
  check_error([&] { ops::clip_coefficient(out, Tensor::zeros({2}), 1.0f, 1.0f); }, {"clip_coefficient", "[2]"});
  check_error([&] { ops::clip_coefficient(out, Tensor::zeros({1}), 1.0f, 0.0f); }, {"loss_scale", "positive"});
}
}  // namespace dtrain::testing
