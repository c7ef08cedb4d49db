// layernorm: the threaded weight-gradient reduction and argument validation
// (values against the naive reference: tests/op_cases/layernorm.cpp).
#include "op_test_util.h"

namespace dtrain::testing {

TEST_CASE("layernorm_backward reduces weight gradients across threads", "[ops][layernorm]") {
  // Large enough for the threaded path with per-thread partial sums.
  const int64_t rows = 300, ch = 130;
  Tensor x = random_tensor({rows, ch}, 3), w = random_tensor({ch}, 4), b = random_tensor({ch}, 5);
  Tensor dout = random_tensor({rows, ch}, 6);
  Tensor out = Tensor::empty({rows, ch}), mean = Tensor::empty({rows}), rstd = Tensor::empty({rows});
  ops::layernorm(out, mean, rstd, x, w, b, 1e-5f);
  Tensor dw = Tensor::zeros({ch}), db = Tensor::zeros({ch}), none;
  ops::layernorm_backward(none, dw, db, dout, x, w, mean, rstd);
  const Vec xv = to_vec(x), dv = to_vec(dout), mv = to_vec(mean), rv = to_vec(rstd);
  Vec rw(static_cast<size_t>(ch), 0.0), rb(static_cast<size_t>(ch), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < ch; ++i) {
      rw[i] += dv[r * ch + i] * (xv[r * ch + i] - mv[r]) * rv[r];
      rb[i] += dv[r * ch + i];
    }
  }
  CHECK_CLOSE(to_vec(dw), rw, 1e-5);
  CHECK_CLOSE(to_vec(db), rb, 1e-5);
}

TEST_CASE("layernorm validates its arguments", "[ops][layernorm][validation]") {
  Tensor x = Tensor::zeros({2, 3, 4}), w = Tensor::zeros({4}), b = Tensor::zeros({4});
  Tensor out = Tensor::zeros({2, 3, 4}), mean = Tensor::zeros({2, 3}), rstd = Tensor::zeros({6}), none;
  check_error([&] { ops::layernorm(out, mean, rstd, none, w, b); }, {"layernorm", "'x'", "undefined"});
  check_error([&] { ops::layernorm(out, mean, rstd, x, Tensor::zeros({3}), b); }, {"'weight'", "[4]", "[3]"});
  check_error([&] { ops::layernorm(out, mean, rstd, x, w, Tensor::zeros({5})); }, {"'bias'", "[4]", "[5]"});
  check_error(
      [&] {
        Tensor o = Tensor::zeros({2, 4, 3});
        ops::layernorm(o, mean, rstd, x, w, b);
      },
      {"'out'", "shape"});
  check_error(
      [&] {
        Tensor m = Tensor::zeros({5});
        ops::layernorm(out, m, rstd, x, w, b);
      },
      {"'mean'", "[2, 3] or [6]", "[5]"});
  check_error(
      [&] {
        Tensor r = Tensor::zeros({6}, DType::bf16);
        ops::layernorm(out, mean, r, x, w, b);
      },
      {"'rstd'", "dtype", "f32"});
  check_error([&] { ops::layernorm(out, mean, rstd, Tensor::zeros({2, 3, 4}, DType::f16), w, b); }, {"'x'", "dtype"});
  check_error([&] { ops::layernorm(out, mean, rstd, x, w, b, -1.0f); }, {"'eps'"});
  check_error([&] { ops::layernorm(out, mean, rstd, x, w, b, NAN); }, {"'eps'"});
  check_error(
      [&] {
        Tensor m = fake_cuda({6});
        ops::layernorm(out, m, rstd, x, w, b);
      },
      {"'mean'", "device"});
  check_error([&] { ops::layernorm(x, mean, rstd, x, w, b); }, {"'out'", "overlaps", "'x'"});
  check_error([&] { ops::layernorm(out, mean, mean, x, w, b); }, {"'mean'", "overlaps", "'rstd'"});
  Tensor dout = Tensor::zeros({2, 3, 4});
  check_error([&] { ops::layernorm_backward(none, none, none, dout, x, w, none, rstd); },
              {"layernorm_backward", "'mean'", "undefined"});
  check_error(
      [&] {
        ops::layernorm_backward(none, none, none, Tensor::zeros({6, 4}), x, w, mean, rstd);
      },
      {"'dout'", "shape"});
  check_error(
      [&] {
        Tensor d = Tensor::zeros({5});
        ops::layernorm_backward(none, d, none, dout, x, w, mean, rstd);
      },
      {"'dweight'", "shape"});
  check_error(
      [&] {
        Tensor d = Tensor::zeros({4});
        ops::layernorm_backward(none, d, d, dout, x, w, mean, rstd);
      },
      {"'dbias'", "overlaps", "'dweight'"});
  check_error([&] { ops::layernorm_backward(dout, none, none, dout, x, w, mean, rstd); },
              {"'dx'", "overlaps", "'dout'"});
}

}  // namespace dtrain::testing
