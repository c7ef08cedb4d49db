// linear and linear_backward against naive loops and finite differences.
#include "op_test_util.h"

namespace dtrain::testing {
namespace {

Vec ref_linear(const Vec& x, const Vec& w, const Vec& bias, int64_t rows, int64_t ic, int64_t oc) {
  Vec out(static_cast<size_t>(rows * oc));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < oc; ++o) {
      double s = bias.empty() ? 0.0 : bias[o];
      for (int64_t i = 0; i < ic; ++i) s += x[r * ic + i] * w[o * ic + i];
      out[r * oc + o] = s;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("linear forward matches a naive loop, with and without bias, over leading dims", "[ops][linear]") {
  struct Case {
    Shape lead;
    int64_t ic, oc;
  };
  const Case cases[] = {{{1}, 1, 1}, {{3}, 5, 7}, {{2, 3}, 13, 4}, {{2, 5}, 16, 17}, {{}, 9, 3}, {{1, 67}, 33, 65}};
  uint32_t seed = 1;
  for (const Case& c : cases) {
    for (bool with_bias : {true, false}) {
      CAPTURE(shape_str(c.lead), c.ic, c.oc, with_bias);
      const int64_t rows = shape_numel(c.lead);
      Shape xs = c.lead, os = c.lead;
      xs.push_back(c.ic);
      os.push_back(c.oc);
      const Vec x = random_vec(static_cast<size_t>(rows * c.ic), seed++);
      const Vec w = random_vec(static_cast<size_t>(c.oc * c.ic), seed++);
      const Vec b = with_bias ? random_vec(static_cast<size_t>(c.oc), seed++) : Vec{};
      Tensor out = Tensor::full(os, NAN);
      ops::linear(out, from_vec(x, xs), from_vec(w, {c.oc, c.ic}), with_bias ? from_vec(b, {c.oc}) : Tensor());
      CHECK_CLOSE(to_vec(out), ref_linear(x, w, b, rows, c.ic, c.oc), 1e-5);
    }
  }
}

TEST_CASE("linear_backward matches finite differences and accumulates", "[ops][linear]") {
  struct Case {
    Shape lead;
    int64_t ic, oc;
  };
  const Case cases[] = {{{1}, 1, 1}, {{2, 3}, 5, 7}, {{11}, 3, 2}, {{1, 2}, 17, 9}};
  uint32_t seed = 50;
  for (const Case& c : cases) {
    CAPTURE(shape_str(c.lead), c.ic, c.oc);
    const int64_t rows = shape_numel(c.lead);
    Shape xs = c.lead, os = c.lead;
    xs.push_back(c.ic);
    os.push_back(c.oc);
    const Vec x = random_vec(static_cast<size_t>(rows * c.ic), seed++);
    const Vec w = random_vec(static_cast<size_t>(c.oc * c.ic), seed++);
    const Vec b = random_vec(static_cast<size_t>(c.oc), seed++);
    const Vec dout = random_vec(static_cast<size_t>(rows * c.oc), seed++);
    const Vec dx0 = random_vec(x.size(), seed++), dw0 = random_vec(w.size(), seed++),
              db0 = random_vec(b.size(), seed++);
    Tensor dx = from_vec(dx0, xs), dw = from_vec(dw0, {c.oc, c.ic}), db = from_vec(db0, {c.oc});
    ops::linear_backward(dx, dw, db, from_vec(dout, os), from_vec(x, xs), from_vec(w, {c.oc, c.ic}));
    const auto f = [&](const Vec& xv, const Vec& wv, const Vec& bv) {
      return ref_linear(xv, wv, bv, rows, c.ic, c.oc);
    };
    CHECK_CLOSE(sub(to_vec(dx), dx0), fd_grad([&](const Vec& v) { return f(v, w, b); }, x, dout), 1e-5);
    CHECK_CLOSE(sub(to_vec(dw), dw0), fd_grad([&](const Vec& v) { return f(x, v, b); }, w, dout), 1e-5);
    CHECK_CLOSE(sub(to_vec(db), db0), fd_grad([&](const Vec& v) { return f(x, w, v); }, b, dout), 1e-5);
    // Each gradient may be skipped on its own.
    Tensor none, db_only = from_vec(db0, {c.oc});
    ops::linear_backward(none, none, db_only, from_vec(dout, os), from_vec(x, xs), from_vec(w, {c.oc, c.ic}));
    CHECK_CLOSE(to_vec(db_only), to_vec(db), 0.0);
  }
}

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
