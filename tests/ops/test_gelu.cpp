// gelu and the ops' common validation rules (values against the formula: the
// op case registry, tests/op_cases/gelu.cpp).
#include "op_test_util.h"

namespace dtrain::testing {

TEST_CASE("gelu validates its arguments", "[ops][gelu][validation]") {
  Tensor x = Tensor::zeros({4, 5}), out = Tensor::zeros({4, 5}), none;
  check_error([&] { ops::gelu(out, none); }, {"gelu", "'x'", "undefined"});
  check_error([&] { ops::gelu(none, x); }, {"gelu", "'out'", "undefined"});
  check_error(
      [&] {
        Tensor o = Tensor::zeros({5, 4});
        ops::gelu(o, x);
      },
      {"'out'", "[4, 5]", "[5, 4]"});
  check_error([&] { ops::gelu(out, Tensor::zeros({4, 5}, DType::bf16)); }, {"'x'", "f32", "bf16"});
  check_error(
      [&] {
        Tensor o = fake_cuda({4, 5});
        ops::gelu(o, x);
      },
      {"'out'", "device"});
  Tensor flat = Tensor::zeros({21});
  check_error(
      [&] {
        Tensor o = flat.narrow(1, 20).reshape({4, 5});
        ops::gelu(o, flat.narrow(0, 20).reshape({4, 5}));
      },
      {"'out'", "partly overlaps", "'x'"});
  check_error([&] { ops::gelu_backward(none, x, x); }, {"gelu_backward", "'dx'", "undefined"});
  check_error([&] { ops::gelu_backward(out, Tensor::zeros({20}), x); }, {"'dout'", "shape"});
  check_error([&] { ops::gelu_backward(x, out, x); }, {"'dx'", "overlaps", "'x'"});
  check_error(
      [&] {
        Tensor d = Tensor::zeros({4, 5}, DType::i32);
        ops::gelu_backward(d, out, x);
      },
      {"'dx'", "dtype"});
}

TEST_CASE("validation refuses mixed dtypes and integers on cuda", "[ops][validation]") {
  // Refused in validation, before any backend: safe with fake tensors in every build.
  Tensor out = fake_cuda({4, 8}, DType::bf16), x = fake_cuda({4, 8}, DType::bf16);
  Tensor f = fake_cuda({4, 8});
  check_error([&] { ops::gelu(f, x); }, {"'out'", "dtype", "bf16"});
  check_error([&] { ops::gelu(out, fake_cuda({4, 8}, DType::f16)); }, {"'out'", "dtype", "expected f16", "bf16"});
  Tensor i = fake_cuda({4, 8}, DType::i32);
  check_error([&] { ops::gelu(i, i); }, {"'x'", "f32, bf16 or f16 on cuda", "i32"});
}

TEST_CASE("validation accepts bf16 and f16 on cuda", "[ops][validation]") {
  if (!cuda_compiled()) {
    // The call passes validation and reaches the CUDA dispatch, which throws
    // "built without CUDA": that proves bf16/f16 were accepted.
    for (DType dt : {DType::bf16, DType::f16}) {
      Tensor x = fake_cuda({4, 8}, dt), out = fake_cuda({4, 8}, dt);
      check_error([&] { ops::gelu(out, x); }, {"without CUDA"});
      Tensor w = fake_cuda({8}, dt), mean = fake_cuda({4}), rstd = fake_cuda({4});
      Tensor ln_out = fake_cuda({4, 8}, dt);
      check_error([&] { ops::layernorm(ln_out, mean, rstd, x, w, w); }, {"without CUDA"});
    }
    return;
  }
  // A CUDA build dispatches accepted calls to real kernels: real tensors only.
  require_gpu_or_skip();
  for (DType dt : {DType::bf16, DType::f16}) {
    const Device gpu = Device::cuda(0);
    Tensor x = Tensor::full({4, 8}, 0.5, dt, gpu), out = Tensor::empty({4, 8}, dt, gpu);
    CHECK_NOTHROW(ops::gelu(out, x));
    Tensor w = Tensor::full({8}, 1.0, dt, gpu), mean = Tensor::empty({4}, DType::f32, gpu);
    Tensor rstd = Tensor::empty({4}, DType::f32, gpu), ln_out = Tensor::empty({4, 8}, dt, gpu);
    CHECK_NOTHROW(ops::layernorm(ln_out, mean, rstd, x, w, w));
    // gelu(0.5) = 0.3457 in the dtype's precision.
    CHECK_CLOSE(out, std::vector<double>(32, 0.5 * 0.5 * (1 + std::tanh(0.7978845608 * (0.5 + 0.044715 * 0.125)))),
                tolerance_for(dt, 0.0, 1e-2));
  }
}

}  // namespace dtrain::testing
