// linear: the threaded bias-gradient sum and argument validation (values
// against the naive reference: tests/op_cases/linear.cpp).
#include "op_test_util.h"

namespace dtrain::testing {

TEST_CASE("linear_backward sums the bias gradient over many rows in parallel", "[ops][linear]") {
  // Large enough for the threaded column-sum path (rows * oc above the grain).
  const int64_t rows = 700, ic = 3, oc = 130;
  Tensor dout = random_tensor({rows, oc}, 7);
  Tensor x = random_tensor({rows, ic}, 8), w = random_tensor({oc, ic}, 9);
  Tensor db = Tensor::zeros({oc}), none;
  ops::linear_backward(none, none, db, dout, x, w);
  const Vec d = to_vec(dout);
  Vec ref(static_cast<size_t>(oc), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < oc; ++o) ref[o] += d[r * oc + o];
  CHECK_CLOSE(to_vec(db), ref, 1e-5);
}

TEST_CASE("linear and linear_backward validate their arguments", "[ops][linear][validation]") {
  Tensor x = Tensor::zeros({2, 3}), w = Tensor::zeros({4, 3}), b = Tensor::zeros({4}), out = Tensor::zeros({2, 4});
  Tensor none;
  check_error([&] { ops::linear(out, none, w, b); }, {"linear", "'x'", "undefined"});
  check_error([&] { ops::linear(out, x, none, b); }, {"linear", "'weight'", "undefined"});
  check_error([&] { ops::linear(out, x, Tensor::zeros({4, 5}), b); }, {"'weight'", "[OC, 3]", "[4, 5]"});
  check_error([&] { ops::linear(out, x, Tensor::zeros({12}), b); }, {"'weight'", "dimensions"});
  check_error([&] { ops::linear(out, x, w, Tensor::zeros({5})); }, {"'bias'", "[4]", "[5]"});
  check_error([&] { ops::linear(out, x, w, Tensor::zeros({4}, DType::bf16)); }, {"'bias'", "dtype"});
  check_error(
      [&] {
        Tensor o = Tensor::zeros({3, 4});
        ops::linear(o, x, w, b);
      },
      {"'out'", "[2, 4]", "[3, 4]"});
  check_error([&] { ops::linear(out, Tensor::zeros({2, 3}, DType::bf16), w, b); }, {"'x'", "f32", "bf16"});
  check_error([&] { ops::linear(out, x, fake_cuda({4, 3}), b); }, {"'weight'", "device"});
  check_error(
      [&] {
        Tensor o = x.reshape({2, 3});
        ops::linear(o, x, Tensor::zeros({3, 3}), none);
      },
      {"'out'", "overlaps", "'x'"});
  Tensor dout = Tensor::zeros({2, 4});
  check_error(
      [&] {
        ops::linear_backward(none, none, none, Tensor::zeros({2, 5}), x, w);
      },
      {"linear_backward", "'dout'", "shape"});
  check_error(
      [&] {
        Tensor d = Tensor::zeros({3, 2});
        ops::linear_backward(d, none, none, dout, x, w);
      },
      {"'dx'", "shape"});
  check_error(
      [&] {
        Tensor d = Tensor::zeros({3, 4});
        ops::linear_backward(none, d, none, dout, x, w);
      },
      {"'dweight'", "shape"});
  check_error(
      [&] {
        Tensor d = Tensor::zeros({3});
        ops::linear_backward(none, none, d, dout, x, w);
      },
      {"'dbias'", "shape", "[4]"});
  check_error(
      [&] {
        Tensor d = w;
        ops::linear_backward(none, d, none, dout, x, w);
      },
      {"'dweight'", "overlaps"});
}

}  // namespace dtrain::testing
