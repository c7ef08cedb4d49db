// gelu and gelu_backward against the formula in double and finite differences.
#include "op_test_util.h"

namespace dtrain::testing {
namespace {

Vec ref_gelu(const Vec& x) {
  Vec out(x.size());
  const double s = std::sqrt(2.0 / M_PI);
  for (size_t i = 0; i < x.size(); ++i)
    out[i] = 0.5 * x[i] * (1.0 + std::tanh(s * (x[i] + 0.044715 * x[i] * x[i] * x[i])));
  return out;
}

}  // namespace

TEST_CASE("gelu forward matches the tanh formula", "[ops][gelu]") {
  for (const cpu::Isa isa : cpu_isas())
    for (int64_t n : {1, 7, 16, 17, 1023, 100003}) {
      const IsaScope scope(isa);
      CAPTURE(isa_name(isa), n);
      const Vec x = random_vec(static_cast<size_t>(n), static_cast<uint32_t>(n), -6.0, 6.0);
      Tensor out = Tensor::full({n}, NAN);
      ops::gelu(out, from_vec(x, {n}));
      CHECK(scaled_error(to_vec(out), ref_gelu(x)) < 2e-6);
      // In place.
      Tensor inplace = from_vec(x, {n});
      ops::gelu(inplace, inplace);
      CHECK(scaled_error(to_vec(inplace), ref_gelu(x)) < 2e-6);
    }
}

TEST_CASE("gelu_backward matches finite differences and accumulates", "[ops][gelu]") {
  for (const cpu::Isa isa : cpu_isas())
    for (int64_t n : {1, 5, 33, 100003}) {
      const IsaScope scope(isa);
      CAPTURE(isa_name(isa), n);
      const Vec x = random_vec(static_cast<size_t>(n), 11, -5.0, 5.0);
      const Vec dout = random_vec(x.size(), 12);
      const Vec dx0 = random_vec(x.size(), 13);
      Tensor dx = from_vec(dx0, {n});
      ops::gelu_backward(dx, from_vec(dout, {n}), from_vec(x, {n}));
      // gelu is elementwise: the finite difference of each element on its own is the full gradient.
      Vec fd(x.size());
      const double h = 1e-5;
      for (size_t i = 0; i < x.size(); ++i) {
        const Vec p = ref_gelu({x[i] + h}), m = ref_gelu({x[i] - h});
        fd[i] = dout[i] * (p[0] - m[0]) / (2 * h);
      }
      CHECK(scaled_error(sub(to_vec(dx), dx0), fd) < 1e-5);
      if (n < 100) CHECK(scaled_error(sub(to_vec(dx), dx0), fd_grad(ref_gelu, x, dout)) < 1e-5);
      // dx may be dout itself (in place on the incoming gradient).
      Tensor d = from_vec(dout, {n});
      ops::gelu_backward(d, d, from_vec(x, {n}));
      Vec expect(x.size());
      for (size_t i = 0; i < x.size(); ++i) expect[i] = dout[i] + fd[i];
      CHECK(scaled_error(to_vec(d), expect) < 1e-5);
    }
}

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

TEST_CASE("validation accepts bf16 on cuda and f32 only on cpu", "[ops][validation]") {
  // Without CUDA compiled in, a call that passes validation reaches the CUDA
  // dispatch, which throws "built without CUDA": that proves bf16 was accepted.
  if (cuda_compiled()) {
    // Not skip_test (which ends the whole binary): the rest of the suite still runs.
    WARN("not checked in a CUDA build: fake cuda tensors must not reach real kernels");
    return;
  }
  Tensor x = fake_cuda({4, 8}, DType::bf16), out = fake_cuda({4, 8}, DType::bf16);
  check_error([&] { ops::gelu(out, x); }, {"without CUDA"});
  Tensor w = fake_cuda({8}, DType::bf16), mean = fake_cuda({4}), rstd = fake_cuda({4});
  Tensor ln_out = fake_cuda({4, 8}, DType::bf16);
  check_error([&] { ops::layernorm(ln_out, mean, rstd, x, w, w); }, {"without CUDA"});
  // ... but not mixed with f32 in one call.
  Tensor f = fake_cuda({4, 8});
  check_error([&] { ops::gelu(f, x); }, {"'out'", "dtype", "bf16"});
  check_error([&] { ops::gelu(out, fake_cuda({4, 8}, DType::f16)); }, {"'out'", "dtype", "expected f16", "bf16"});
  Tensor i = fake_cuda({4, 8}, DType::i32);
  check_error([&] { ops::gelu(i, i); }, {"'x'", "f32, bf16 or f16 on cuda", "i32"});
}

}  // namespace dtrain::testing
