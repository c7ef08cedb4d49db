// Causal multi-head attention against a naive loop and finite differences.
#include "op_test_util.h"

namespace dtrain::testing {
namespace {

struct Dims {
  int64_t b, t, c, nh;
};

// out [B, T, C] from qkv [B, T, 3C]; lse [B, NH, T] written when given.
Vec ref_attention(const Vec& qkv, const Dims& d, Vec* lse = nullptr) {
  const int64_t hs = d.c / d.nh, c3 = 3 * d.c;
  Vec out(static_cast<size_t>(d.b * d.t * d.c), 0.0);
  if (lse) lse->assign(static_cast<size_t>(d.b * d.nh * d.t), 0.0);
  for (int64_t b = 0; b < d.b; ++b) {
    for (int64_t h = 0; h < d.nh; ++h) {
      for (int64_t t = 0; t < d.t; ++t) {
        std::vector<double> s(static_cast<size_t>(t + 1));
        double mx = -INFINITY;
        for (int64_t j = 0; j <= t; ++j) {
          double dot = 0.0;
          for (int64_t i = 0; i < hs; ++i) {
            dot += qkv[(b * d.t + t) * c3 + h * hs + i] * qkv[(b * d.t + j) * c3 + d.c + h * hs + i];
          }
          s[j] = dot / std::sqrt(static_cast<double>(hs));
          mx = std::max(mx, s[j]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j <= t; ++j) sum += std::exp(s[j] - mx);
        for (int64_t j = 0; j <= t; ++j) {
          const double p = std::exp(s[j] - mx) / sum;
          for (int64_t i = 0; i < hs; ++i) {
            out[(b * d.t + t) * d.c + h * hs + i] += p * qkv[(b * d.t + j) * c3 + 2 * d.c + h * hs + i];
          }
        }
        if (lse) (*lse)[(b * d.nh + h) * d.t + t] = mx + std::log(sum);
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("attention forward matches a naive loop, lse included", "[ops][attention]") {
  const Dims cases[] = {{1, 1, 1, 1}, {1, 5, 4, 2}, {2, 7, 6, 3}, {3, 13, 8, 1}, {1, 64, 32, 4}, {2, 17, 24, 4}};
  uint32_t seed = 1;
  for (const Dims& d : cases) {
    CAPTURE(d.b, d.t, d.c, d.nh);
    const Vec qkv = random_vec(static_cast<size_t>(d.b * d.t * 3 * d.c), seed++, -2.0, 2.0);
    Tensor out = Tensor::full({d.b, d.t, d.c}, NAN), lse = Tensor::full({d.b, d.nh, d.t}, NAN);
    ops::attention(out, lse, from_vec(qkv, {d.b, d.t, 3 * d.c}), d.nh);
    Vec rl;
    const Vec ref = ref_attention(qkv, d, &rl);
    CHECK_CLOSE(to_vec(out), ref, 1e-5);
    CHECK_CLOSE(to_vec(lse), rl, 1e-5);
  }
}

TEST_CASE("attention_backward matches finite differences and accumulates", "[ops][attention]") {
  const Dims cases[] = {{1, 1, 1, 1}, {1, 3, 4, 2}, {2, 5, 6, 3}, {1, 7, 3, 1}};
  uint32_t seed = 20;
  for (const Dims& d : cases) {
    CAPTURE(d.b, d.t, d.c, d.nh);
    const Shape qs{d.b, d.t, 3 * d.c}, os{d.b, d.t, d.c};
    const Vec qkv = random_vec(static_cast<size_t>(d.b * d.t * 3 * d.c), seed++, -2.0, 2.0);
    const Vec dout = random_vec(static_cast<size_t>(d.b * d.t * d.c), seed++);
    const Vec dqkv0 = random_vec(qkv.size(), seed++);
    const Tensor qt = from_vec(qkv, qs);
    Tensor out = Tensor::empty(os), lse = Tensor::empty({d.b, d.nh, d.t});
    ops::attention(out, lse, qt, d.nh);
    Tensor dqkv = from_vec(dqkv0, qs);
    ops::attention_backward(dqkv, from_vec(dout, os), qt, out, lse, d.nh);
    const Vec fd = fd_grad([&](const Vec& v) { return ref_attention(v, d); }, qkv, dout);
    CHECK_CLOSE(sub(to_vec(dqkv), dqkv0), fd, 1e-4);
  }
}

TEST_CASE("attention runs the threaded path on a longer sequence", "[ops][attention]") {
  const Dims d{2, 96, 16, 2};
  const Vec qkv = random_vec(static_cast<size_t>(d.b * d.t * 3 * d.c), 9, -1.0, 1.0);
  Tensor out = Tensor::empty({d.b, d.t, d.c}), lse = Tensor::empty({d.b, d.nh, d.t});
  const Tensor qt = from_vec(qkv, {d.b, d.t, 3 * d.c});
  ops::attention(out, lse, qt, d.nh);
  CHECK_CLOSE(to_vec(out), ref_attention(qkv, d), 1e-5);
  // Backward with dout = one-hot on a single output element gives that element's gradient:
  // check a few of its entries (q, k, v, and one from the other batch) by central differences.
  Tensor dout = Tensor::zeros({d.b, d.t, d.c});
  const int64_t probe = (1 * d.t + 50) * d.c + 9;
  dout.set_item(probe, 1.0);
  Tensor dqkv = Tensor::zeros({d.b, d.t, 3 * d.c});
  ops::attention_backward(dqkv, dout, qt, out, lse, d.nh);
  Vec x = qkv;
  for (int64_t idx : {(1 * d.t + 50) * 3 * d.c + 9, (1 * d.t + 10) * 3 * d.c + d.c + 9,
                      (1 * d.t + 3) * 3 * d.c + 2 * d.c + 9, (0 * d.t + 3) * 3 * d.c + 9}) {
    const double h = 1e-5, x0 = x[idx];
    x[idx] = x0 + h;
    const double fp = ref_attention(x, d)[probe];
    x[idx] = x0 - h;
    const double fm = ref_attention(x, d)[probe];
    x[idx] = x0;
    CHECK(std::fabs(dqkv.item(idx) - (fp - fm) / (2 * h)) < 1e-4);
  }
}

TEST_CASE("attention validates its arguments", "[ops][attention][validation]") {
  Tensor qkv = Tensor::zeros({2, 3, 12}), out = Tensor::zeros({2, 3, 4}), lse = Tensor::zeros({2, 2, 3}), none;
  check_error([&] { ops::attention(out, lse, none, 2); }, {"attention", "'qkv'", "undefined"});
  check_error([&] { ops::attention(out, lse, Tensor::zeros({2, 3, 13}), 2); }, {"'qkv'", "3*C", "13"});
  check_error([&] { ops::attention(out, lse, Tensor::zeros({6, 12}), 2); }, {"'qkv'", "dimensions"});
  check_error([&] { ops::attention(out, lse, qkv, 3); }, {"'num_heads'", "divide", "4", "got 3"});
  check_error([&] { ops::attention(out, lse, qkv, 0); }, {"'num_heads'"});
  check_error(
      [&] {
        Tensor o = Tensor::zeros({2, 3, 5});
        ops::attention(o, lse, qkv, 2);
      },
      {"'out'", "shape"});
  check_error(
      [&] {
        Tensor l = Tensor::zeros({2, 3, 2});
        ops::attention(out, l, qkv, 2);
      },
      {"'lse'", "[2, 2, 3]", "[2, 3, 2]"});
  check_error(
      [&] {
        Tensor l = Tensor::zeros({2, 2, 3}, DType::bf16);
        ops::attention(out, l, qkv, 2);
      },
      {"'lse'", "dtype"});
  check_error([&] { ops::attention(out, lse, Tensor::zeros({2, 3, 12}, DType::bf16), 2); }, {"'qkv'", "f32"});
  check_error(
      [&] {
        Tensor l = fake_cuda({2, 2, 3});
        ops::attention(out, l, qkv, 2);
      },
      {"'lse'", "device"});
  check_error(
      [&] {
        Tensor o = qkv.reshape({6, 12}).narrow(0, 2).reshape({2, 3, 4});
        ops::attention(o, lse, qkv, 2);
      },
      {"'out'", "overlaps", "'qkv'"});
  Tensor dout = Tensor::zeros({2, 3, 4}), dqkv = Tensor::zeros({2, 3, 12});
  check_error([&] { ops::attention_backward(none, dout, qkv, out, lse, 2); }, {"attention_backward", "'dqkv'"});
  check_error(
      [&] {
        Tensor d = Tensor::zeros({2, 3, 6});
        ops::attention_backward(d, dout, qkv, out, lse, 2);
      },
      {"'dqkv'", "shape"});
  check_error([&] { ops::attention_backward(dqkv, Tensor::zeros({2, 4, 4}), qkv, out, lse, 2); }, {"'dout'", "shape"});
  check_error([&] { ops::attention_backward(dqkv, dout, qkv, out, Tensor::zeros({2, 3}), 2); }, {"'lse'", "shape"});
  check_error([&] { ops::attention_backward(qkv, dout, qkv, out, lse, 2); }, {"'dqkv'", "overlaps", "'qkv'"});
}

}  // namespace dtrain::testing
