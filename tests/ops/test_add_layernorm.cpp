// add_layernorm: what the op-case table (tests/op_cases/add_layernorm.cpp)
// does not state: that the fused op gives exactly what add then layernorm
// give, in every dtype and on the threaded path (bf16/f16: the residual is
// rounded before it is normalised), and argument validation.
#include "op_test_util.h"

namespace dtrain::testing {

namespace {

struct LayernormOutputs {
  Tensor residual, out, mean, rstd;
};

LayernormOutputs outputs_like(const Tensor& a) {
  const int64_t rows = a.numel() / a.size(-1);
  return {Tensor::empty(a.shape(), a.dtype()), Tensor::empty(a.shape(), a.dtype()), Tensor::empty({rows}),
          Tensor::empty({rows})};
}

}  // namespace

TEST_CASE("add_layernorm equals add then layernorm bit for bit", "[ops][add_layernorm]") {
  // 300 x 130: above the threaded-loop threshold, and an odd width.
  for (const Shape& shape : {Shape{3, 7}, Shape{300, 130}, Shape{2, 5, 768}}) {
    for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
      const int64_t ch = shape.back();
      const Tensor a = cast_to(random_tensor(shape, 11, -2.0f, 3.0f), dt);
      const Tensor b = cast_to(random_tensor(shape, 12), dt);
      const Tensor w = cast_to(random_tensor({ch}, 13), dt), bias = cast_to(random_tensor({ch}, 14), dt);
      for (const bool with_bias : {true, false}) {
        const Tensor bias_or_none = with_bias ? bias : Tensor();
        INFO(shape_str(shape) << " " << dtype_name(dt) << (with_bias ? "" : " no bias"));
        LayernormOutputs fused = outputs_like(a), plain = outputs_like(a);
        ops::add_layernorm(fused.residual, fused.out, fused.mean, fused.rstd, a, b, w, bias_or_none);
        ops::add(plain.residual, a, b);
        ops::layernorm(plain.out, plain.mean, plain.rstd, plain.residual, w, bias_or_none);
        CHECK_CLOSE(to_vec(fused.residual), to_vec(plain.residual), 0.0);
        CHECK_CLOSE(to_vec(fused.out), to_vec(plain.out), 0.0);
        CHECK_CLOSE(to_vec(fused.mean), to_vec(plain.mean), 0.0);
        CHECK_CLOSE(to_vec(fused.rstd), to_vec(plain.rstd), 0.0);
      }
    }
  }
}

TEST_CASE("add_layernorm normalises the rounded residual in bf16", "[ops][add_layernorm]") {
  // The f32 sum of these rounds in bf16 (1 + 2^-9 is not representable): the
  // statistics must be those of the stored residual, not of the exact sum.
  const int64_t ch = 4;
  const Tensor a = cast_to(from_vec({1.0, 1.0, -1.0, 0.5}, {1, ch}), DType::bf16);
  const Tensor b = cast_to(from_vec({0x1p-9, 0x1p-9, 0.0, 0.0}, {1, ch}), DType::bf16);
  const Tensor w = cast_to(from_vec({1.0, 1.0, 1.0, 1.0}, {ch}), DType::bf16);
  LayernormOutputs fused = outputs_like(a);
  ops::add_layernorm(fused.residual, fused.out, fused.mean, fused.rstd, a, b, w, Tensor());
  CHECK_CLOSE(to_vec(fused.residual), Vec({1.0, 1.0, -1.0, 0.5}), 0.0);
  CHECK_CLOSE(to_vec(fused.mean), Vec({0.375}), 0.0);
}

TEST_CASE("add_layernorm works in place over either summand", "[ops][add_layernorm]") {
  const Shape shape{4, 9};
  const Tensor a = random_tensor(shape, 21), b = random_tensor(shape, 22), w = random_tensor({9}, 23);
  LayernormOutputs plain = outputs_like(a);
  ops::add_layernorm(plain.residual, plain.out, plain.mean, plain.rstd, a, b, w, Tensor());
  for (const bool over_a : {true, false}) {
    Tensor x = a.clone(), y = b.clone();
    Tensor& residual = over_a ? x : y;
    LayernormOutputs fused = outputs_like(a);
    ops::add_layernorm(residual, fused.out, fused.mean, fused.rstd, x, y, w, Tensor());
    CHECK_CLOSE(to_vec(residual), to_vec(plain.residual), 0.0);
    CHECK_CLOSE(to_vec(fused.out), to_vec(plain.out), 0.0);
  }
}

TEST_CASE("add_layernorm validates its arguments", "[ops][add_layernorm][validation]") {
  Tensor a = Tensor::zeros({2, 3, 4}), b = Tensor::zeros({2, 3, 4}), w = Tensor::zeros({4}), bias = Tensor::zeros({4});
  Tensor res = Tensor::zeros({2, 3, 4}), out = Tensor::zeros({2, 3, 4}), mean = Tensor::zeros({2, 3}),
         rstd = Tensor::zeros({6}), none;
  check_error([&] { ops::add_layernorm(res, out, mean, rstd, none, b, w, bias); },
              {"add_layernorm", "'a'", "undefined"});
  check_error([&] { ops::add_layernorm(res, out, mean, rstd, a, none, w, bias); },
              {"add_layernorm", "'b'", "undefined"});
  check_error(
      [&] {
        Tensor b2 = Tensor::zeros({2, 4, 3});
        ops::add_layernorm(res, out, mean, rstd, a, b2, w, bias);
      },
      {"'b'", "shape"});
  check_error(
      [&] {
        Tensor b2 = Tensor::zeros({2, 3, 4}, DType::bf16);
        ops::add_layernorm(res, out, mean, rstd, a, b2, w, bias);
      },
      {"'b'", "dtype"});
  check_error([&] { ops::add_layernorm(none, out, mean, rstd, a, b, w, bias); }, {"'residual'", "undefined"});
  check_error(
      [&] {
        Tensor r2 = Tensor::zeros({6, 4});
        ops::add_layernorm(r2, out, mean, rstd, a, b, w, bias);
      },
      {"'residual'", "shape"});
  check_error([&] { ops::add_layernorm(res, none, mean, rstd, a, b, w, bias); }, {"'out'", "undefined"});
  check_error([&] { ops::add_layernorm(res, out, mean, rstd, a, b, Tensor::zeros({3}), bias); },
              {"'weight'", "[4]", "[3]"});
  check_error([&] { ops::add_layernorm(res, out, mean, rstd, a, b, w, Tensor::zeros({5})); }, {"'bias'", "[5]"});
  check_error(
      [&] {
        Tensor m = Tensor::zeros({5});
        ops::add_layernorm(res, out, m, rstd, a, b, w, bias);
      },
      {"'mean'", "[2, 3] or [6]", "row of 'a'", "[5]"});
  check_error([&] { ops::add_layernorm(res, out, mean, rstd, a, b, w, bias, -1.0f); }, {"'eps'"});
  check_error(
      [&] {
        Tensor r = fake_cuda({2, 3, 4});
        ops::add_layernorm(r, out, mean, rstd, a, b, w, bias);
      },
      {"'residual'", "device"});
  // The residual may be a or b exactly, but nothing may overlap partly, and out must be separate.
  check_error(
      [&] {
        Tensor block = Tensor::zeros({25});
        Tensor shifted = block.narrow(1, 24).reshape({2, 3, 4});
        Tensor a2 = block.narrow(0, 24).reshape({2, 3, 4});
        ops::add_layernorm(shifted, out, mean, rstd, a2, b, w, bias);
      },
      {"'residual'", "'a'", "overlap"});
  check_error([&] { ops::add_layernorm(res, res, mean, rstd, a, b, w, bias); }, {"'out'", "'residual'", "overlap"});
  check_error([&] { ops::add_layernorm(res, a, mean, rstd, a, b, w, bias); }, {"'out'", "'a'", "overlap"});
}

}  // namespace dtrain::testing
