// matmul and matmul_backward against naive loops and finite differences.
#include "op_test_util.h"

namespace dtrain::testing {
namespace {

// out[b] = alpha * op(a[b]) op(b[b]) + beta * out0[b], in double.
Vec ref_matmul(const Vec& a, const Vec& b, const Vec& out0, int64_t batch, int64_t m, int64_t n, int64_t k, bool ta,
               bool tb, double alpha, double beta) {
  Vec out(static_cast<size_t>(batch * m * n));
  for (int64_t z = 0; z < batch; ++z) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double s = 0.0;
        for (int64_t p = 0; p < k; ++p) {
          const double av = ta ? a[z * m * k + p * m + i] : a[z * m * k + i * k + p];
          const double bv = tb ? b[z * k * n + j * k + p] : b[z * k * n + p * n + j];
          s += av * bv;
        }
        const size_t o = static_cast<size_t>(z * m * n + i * n + j);
        out[o] = alpha * s + (beta != 0.0 ? beta * out0[o] : 0.0);
      }
    }
  }
  return out;
}

struct Case {
  int64_t batch, m, n, k;
  bool batched;
};

Shape a_shape(const Case& c, bool ta) {
  Shape s = ta ? Shape{c.k, c.m} : Shape{c.m, c.k};
  if (c.batched) s.insert(s.begin(), c.batch);
  return s;
}
Shape b_shape(const Case& c, bool tb) {
  Shape s = tb ? Shape{c.n, c.k} : Shape{c.k, c.n};
  if (c.batched) s.insert(s.begin(), c.batch);
  return s;
}
Shape o_shape(const Case& c) {
  Shape s{c.m, c.n};
  if (c.batched) s.insert(s.begin(), c.batch);
  return s;
}

}  // namespace

TEST_CASE("matmul forward matches a naive loop for all transposes, batched, alpha and beta", "[ops][matmul]") {
  const Case cases[] = {{1, 1, 1, 1, false}, {1, 7, 13, 5, false}, {1, 33, 17, 64, false},
                        {3, 5, 11, 3, true}, {2, 1, 9, 31, true},  {1, 70, 65, 129, false}};
  uint32_t seed = 1;
  for (const Case& c : cases) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (const auto& [alpha, beta] : {std::pair<float, float>{1.0f, 0.0f}, {0.5f, 2.0f}, {-1.5f, 1.0f}}) {
        CAPTURE(c.batch, c.m, c.n, c.k, c.batched, ta, tb, alpha, beta);
        const Vec a = random_vec(static_cast<size_t>(c.batch * c.m * c.k), seed++);
        const Vec b = random_vec(static_cast<size_t>(c.batch * c.k * c.n), seed++);
        const Vec o0 = random_vec(static_cast<size_t>(c.batch * c.m * c.n), seed++);
        Tensor out = from_vec(o0, o_shape(c));
        if (beta == 0.0f) out.fill_(NAN);  // beta = 0 must not read out
        ops::matmul(out, from_vec(a, a_shape(c, ta)), from_vec(b, b_shape(c, tb)), ta, tb, alpha, beta);
        const Vec ref = ref_matmul(a, b, o0, c.batch, c.m, c.n, c.k, ta, tb, alpha, beta);
        CHECK_CLOSE(to_vec(out), ref, 1e-5);
      }
    }
  }
}

TEST_CASE("matmul splits large products across threads correctly", "[ops][matmul]") {
  // Just above the threading threshold (2^25 multiply-adds): split by rows (m >= n) and by columns (n > m).
  const Case cases[] = {{1, 400, 97, 870, false}, {1, 40, 1000, 850, false}};
  uint32_t seed = 500;
  for (const Case& c : cases) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      CAPTURE(c.m, c.n, c.k, ta, tb);
      const Vec a = random_vec(static_cast<size_t>(c.batch * c.m * c.k), seed++);
      const Vec b = random_vec(static_cast<size_t>(c.batch * c.k * c.n), seed++);
      const Vec o0 = random_vec(static_cast<size_t>(c.batch * c.m * c.n), seed++);
      Tensor out = from_vec(o0, o_shape(c));
      ops::matmul(out, from_vec(a, a_shape(c, ta)), from_vec(b, b_shape(c, tb)), ta, tb, 0.75f, 0.5f);
      CHECK_CLOSE(to_vec(out), ref_matmul(a, b, o0, c.batch, c.m, c.n, c.k, ta, tb, 0.75, 0.5), 1e-5);
    }
  }
}

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

TEST_CASE("matmul_backward matches finite differences and accumulates", "[ops][matmul]") {
  const Case cases[] = {{1, 1, 1, 1, false}, {1, 3, 5, 7, false}, {2, 4, 3, 5, true}, {1, 17, 2, 9, false}};
  uint32_t seed = 100;
  for (const Case& c : cases) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      CAPTURE(c.batch, c.m, c.n, c.k, c.batched, ta, tb);
      const Vec a = random_vec(static_cast<size_t>(c.batch * c.m * c.k), seed++);
      const Vec b = random_vec(static_cast<size_t>(c.batch * c.k * c.n), seed++);
      const Vec dout = random_vec(static_cast<size_t>(c.batch * c.m * c.n), seed++);
      const Vec da0 = random_vec(a.size(), seed++);
      const Vec db0 = random_vec(b.size(), seed++);
      Tensor da = from_vec(da0, a_shape(c, ta)), db = from_vec(db0, b_shape(c, tb));
      ops::matmul_backward(da, db, from_vec(dout, o_shape(c)), from_vec(a, a_shape(c, ta)), from_vec(b, b_shape(c, tb)),
                           ta, tb);
      const Vec none;
      const Vec ga =
          fd_grad([&](const Vec& x) { return ref_matmul(x, b, none, c.batch, c.m, c.n, c.k, ta, tb, 1, 0); }, a, dout);
      const Vec gb =
          fd_grad([&](const Vec& x) { return ref_matmul(a, x, none, c.batch, c.m, c.n, c.k, ta, tb, 1, 0); }, b, dout);
      CHECK_CLOSE(sub(to_vec(da), da0), ga, 1e-5);
      CHECK_CLOSE(sub(to_vec(db), db0), gb, 1e-5);
      // Only one gradient requested: the other stays untouched.
      Tensor only_db = from_vec(db0, b_shape(c, tb));
      Tensor skip;
      ops::matmul_backward(skip, only_db, from_vec(dout, o_shape(c)), from_vec(a, a_shape(c, ta)),
                           from_vec(b, b_shape(c, tb)), ta, tb);
      CHECK_CLOSE(sub(to_vec(only_db), db0), gb, 1e-5);
    }
  }
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
