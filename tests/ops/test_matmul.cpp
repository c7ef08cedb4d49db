// matmul and matmul_backward: K = 0, empty outputs and argument validation (values
// against the naive reference: the op case registry, tests/op_cases/matmul.cpp).
#include "op_test_util.h"

namespace dtrain::testing {
TEST_CASE("matmul handles K = 0 and empty outputs", "[ops][matmul]") {
  Tensor out = Tensor::full({2, 3}, 5.0);
  ops::matmul(out, Tensor::empty({2, 0}), Tensor::empty({0, 3}), false, false, 1.0f, 0.0f);
  for (float v : out.to_vector()) CHECK(v == 0.0f);
  out.fill_(2.0);
  ops::matmul(out, Tensor::empty({2, 0}), Tensor::empty({0, 3}), false, false, 1.0f, 3.0f);
  for (float v : out.to_vector()) CHECK(v == 6.0f);
  Tensor empty_out = Tensor::empty({0, 3});
  ops::matmul(empty_out, Tensor::empty({0, 4}), Tensor::empty({4, 3}));
}

TEST_CASE("matmul validates its arguments", "[ops][matmul][validation]") {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({3, 4}), out = Tensor::zeros({2, 4});
  Tensor none;
  check_error([&] { ops::matmul(out, none, b); }, {"matmul", "'a'", "undefined"});
  check_error([&] { ops::matmul(none, a, b); }, {"matmul", "'out'", "undefined"});
  check_error(
      [&] {
        Tensor o = Tensor::zeros({2, 5});
        ops::matmul(o, a, b);
      },
      {"'out'", "[2, 4]", "[2, 5]"});
  check_error([&] { ops::matmul(out, a, Tensor::zeros({4, 4})); }, {"matmul", "inner dimensions"});
  check_error([&] { ops::matmul(out, a, b, true); }, {"inner dimensions", "trans_a=1"});
  check_error([&] { ops::matmul(out, Tensor::zeros({3}), b); }, {"'a'", "2-D or 3-D"});
  check_error([&] { ops::matmul(out, a, Tensor::zeros({1, 3, 4})); }, {"'b'", "dimensions", "expected 2"});
  check_error(
      [&] {
        Tensor o = Tensor::zeros({2, 2, 4});
        ops::matmul(o, Tensor::zeros({2, 2, 3}), Tensor::zeros({3, 3, 4}));
      },
      {"'b'", "batch", "expected 2", "got 3"});
  check_error([&] { ops::matmul(out, Tensor::zeros({2, 3}, DType::bf16), b); }, {"'a'", "dtype", "f32", "bf16"});
  check_error([&] { ops::matmul(out, a, Tensor::zeros({3, 4}, DType::i32)); }, {"'b'", "dtype", "i32"});
  check_error(
      [&] {
        Tensor o = Tensor::zeros({2, 4}, DType::f16);
        ops::matmul(o, a, b);
      },
      {"'out'", "dtype"});
  check_error(
      [&] {
        Tensor o = fake_cuda({2, 4});
        ops::matmul(o, a, b);
      },
      {"'out'", "device", "cpu", "cuda:0"});
  check_error([&] { ops::matmul(out, a, b, false, false, NAN); }, {"'alpha'", "finite"});
  check_error([&] { ops::matmul(out, a, b, false, false, 1.0f, INFINITY); }, {"'beta'", "finite"});
  // out overlapping an input (GEMM reads inputs while writing out).
  Tensor big = Tensor::zeros({4, 4});
  Tensor view = big.narrow(0, 2);
  Tensor sq = big.narrow(2, 2).reshape({2, 4});
  check_error(
      [&] {
        ops::matmul(view, big.reshape({4, 4}).narrow(0, 2).reshape({2, 4}), Tensor::zeros({4, 4}));
      },
      {"'out'", "overlaps", "'a'"});
  check_error([&] { ops::matmul(sq, Tensor::zeros({2, 4}), big); }, {"'out'", "overlaps", "'b'"});
}

TEST_CASE("matmul_backward validates its arguments", "[ops][matmul][validation]") {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({3, 4}), dout = Tensor::zeros({2, 4});
  Tensor da = Tensor::zeros({2, 3}), db = Tensor::zeros({3, 4}), none;
  check_error([&] { ops::matmul_backward(da, db, none, a, b); }, {"matmul_backward", "'dout'", "undefined"});
  check_error([&] { ops::matmul_backward(da, db, Tensor::zeros({2, 5}), a, b); }, {"'dout'", "shape"});
  check_error(
      [&] {
        Tensor x = Tensor::zeros({3, 2});
        ops::matmul_backward(x, db, dout, a, b);
      },
      {"'da'", "shape"});
  check_error(
      [&] {
        Tensor x = Tensor::zeros({4, 3});
        ops::matmul_backward(da, x, dout, a, b);
      },
      {"'db'", "shape"});
  check_error([&] { ops::matmul_backward(da, db, dout, a, b, false, true); }, {"inner dimensions"});
  check_error([&] { ops::matmul_backward(a, db, dout, a, b); }, {"'da'", "overlaps", "'a'"});
  check_error(
      [&] {
        Tensor x = dout.reshape({4, 2}).narrow(0, 3).reshape({3, 2});
        Tensor y = x.reshape({2, 3});
        ops::matmul_backward(y, none, dout, a, b);
      },
      {"'da'", "overlaps", "'dout'"});
  check_error(
      [&] {
        Tensor x = fake_cuda({3, 4});
        ops::matmul_backward(da, x, dout, a, b);
      },
      {"'db'", "device"});
  check_error(
      [&] {
        Tensor x = Tensor::zeros({2, 4}, DType::bf16);
        ops::matmul_backward(da, db, x, a, b);
      },
      {"'dout'", "dtype"});
}

}  // namespace dtrain::testing
