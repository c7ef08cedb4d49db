// attention: the threaded path on a longer sequence (backward probed element by
// element) and argument validation. Values of every shape against the naive
// reference: the op case registry, tests/op_cases/attention.cpp.
#include "op_case.h"
#include "op_test_util.h"

namespace dtrain::testing {
namespace {

// The registry's case for this shape: its reference is the naive loop in double.
op_cases::OpCase registry_case(const std::string& label) {
  for (op_cases::OpCase& c : op_cases::test_cases("attention"))
    if (c.label == label) return c;
  FAIL("no attention case '" << label << "' in tests/op_cases/attention.cpp");
  return {};
}

}  // namespace

TEST_CASE("attention runs the threaded path on a longer sequence", "[ops][attention]") {
  struct {
    int64_t b, t, c, nh;
  } const d{2, 96, 16, 2};
  const op_cases::OpCase c = registry_case("B 2 T 96 C 16 NH 2");
  op_cases::Values in = op_cases::values_of(c, op_cases::bind(c, DType::f32, Device::cpu()));
  const auto ref_out = [&](const Vec& qkv) {
    in["qkv"] = qkv;
    return c.reference(in).at("out");
  };
  const Vec qkv = in.at("qkv");
  Tensor out = Tensor::empty({d.b, d.t, d.c}), lse = Tensor::empty({d.b, d.nh, d.t});
  const Tensor qt = from_vec(qkv, {d.b, d.t, 3 * d.c});
  ops::attention(out, lse, qt, d.nh);
  CHECK_CLOSE(to_vec(out), ref_out(qkv), 1e-5);
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
    const double fp = ref_out(x)[probe];
    x[idx] = x0 - h;
    const double fm = ref_out(x)[probe];
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
