// layernorm and layernorm_backward against a naive loop and finite differences.
#include "op_test_util.h"

namespace dtrain::testing {
namespace {

// Returns out; mean/rstd written when given.
Vec ref_layernorm(const Vec& x, const Vec& w, const Vec& b, int64_t rows, int64_t ch, double eps, Vec* mean = nullptr,
                  Vec* rstd = nullptr) {
  Vec out(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double m = 0.0, v = 0.0;
    for (int64_t i = 0; i < ch; ++i) m += x[r * ch + i];
    m /= ch;
    for (int64_t i = 0; i < ch; ++i) v += (x[r * ch + i] - m) * (x[r * ch + i] - m);
    const double s = 1.0 / std::sqrt(v / ch + eps);
    for (int64_t i = 0; i < ch; ++i) out[r * ch + i] = (x[r * ch + i] - m) * s * w[i] + (b.empty() ? 0.0 : b[i]);
    if (mean) mean->push_back(m);
    if (rstd) rstd->push_back(s);
  }
  return out;
}

}  // namespace

TEST_CASE("layernorm forward matches a naive loop", "[ops][layernorm]") {
  const std::pair<Shape, int64_t> cases[] = {{{1}, 1}, {{3}, 5}, {{2, 3}, 17}, {{4}, 64}, {{1, 2}, 769}};
  uint32_t seed = 1;
  for (const auto& [lead, ch] : cases) {
    for (bool with_bias : {true, false}) {
      CAPTURE(shape_str(lead), ch, with_bias);
      const int64_t rows = shape_numel(lead);
      Shape xs = lead;
      xs.push_back(ch);
      const Vec x = random_vec(static_cast<size_t>(rows * ch), seed++, -2.0, 3.0);
      const Vec w = random_vec(static_cast<size_t>(ch), seed++);
      const Vec b = with_bias ? random_vec(static_cast<size_t>(ch), seed++) : Vec{};
      Tensor out = Tensor::full(xs, NAN), mean = Tensor::empty(lead), rstd = Tensor::empty({rows});
      ops::layernorm(out, mean, rstd, from_vec(x, xs), from_vec(w, {ch}), with_bias ? from_vec(b, {ch}) : Tensor(),
                     1e-5f);
      Vec rm, rr;
      const Vec ref = ref_layernorm(x, w, b, rows, ch, 1e-5, &rm, &rr);
      CHECK_CLOSE(to_vec(out), ref, 1e-5);
      CHECK_CLOSE(to_vec(mean), rm, 1e-6);
      // rstd can be large for ch = 1 (1/sqrt(eps)); compare relatively.
      const Vec got = to_vec(rstd);
      for (size_t i = 0; i < rr.size(); ++i) CHECK(std::fabs(got[i] - rr[i]) <= 1e-4 * rr[i]);
    }
  }
}

TEST_CASE("layernorm_backward matches finite differences and accumulates", "[ops][layernorm]") {
  const std::pair<Shape, int64_t> cases[] = {{{1}, 2}, {{3}, 5}, {{2, 2}, 7}, {{1}, 16}, {{5}, 3}};
  uint32_t seed = 40;
  for (const auto& [lead, ch] : cases) {
    CAPTURE(shape_str(lead), ch);
    const int64_t rows = shape_numel(lead);
    Shape xs = lead;
    xs.push_back(ch);
    const Vec x = random_vec(static_cast<size_t>(rows * ch), seed++, -2.0, 2.0);
    const Vec w = random_vec(static_cast<size_t>(ch), seed++);
    const Vec b = random_vec(static_cast<size_t>(ch), seed++);
    const Vec dout = random_vec(x.size(), seed++);
    const Vec dx0 = random_vec(x.size(), seed++), dw0 = random_vec(w.size(), seed++),
              db0 = random_vec(b.size(), seed++);
    Tensor out = Tensor::empty(xs), mean = Tensor::empty({rows}), rstd = Tensor::empty({rows});
    const Tensor xt = from_vec(x, xs), wt = from_vec(w, {ch});
    ops::layernorm(out, mean, rstd, xt, wt, from_vec(b, {ch}), 1e-5f);
    Tensor dx = from_vec(dx0, xs), dw = from_vec(dw0, {ch}), db = from_vec(db0, {ch});
    ops::layernorm_backward(dx, dw, db, from_vec(dout, xs), xt, wt, mean, rstd);
    // ch by copy: C++17 lambdas cannot capture a structured binding (clang rejects it).
    const auto f = [&, ch = ch](const Vec& xv, const Vec& wv, const Vec& bv) {
      return ref_layernorm(xv, wv, bv, rows, ch, 1e-5);
    };
    CHECK_CLOSE(sub(to_vec(dx), dx0), fd_grad([&](const Vec& v) { return f(v, w, b); }, x, dout), 1e-4);
    CHECK_CLOSE(sub(to_vec(dw), dw0), fd_grad([&](const Vec& v) { return f(x, v, b); }, w, dout), 1e-5);
    CHECK_CLOSE(sub(to_vec(db), db0), fd_grad([&](const Vec& v) { return f(x, w, v); }, b, dout), 1e-5);
  }
}

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
