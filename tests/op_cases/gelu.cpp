// gelu and gelu_backward: cases, the tanh formula in double, benchmark shapes.
#include "dtrain/ops.h"
#include "gelu_reference.h"
#include "op_case.h"

namespace dtrain::op_cases {
namespace {

Vec gelu_all(const Vec& x) {
  Vec out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = gelu_ref(x[i]);
  return out;
}

// dx = start + dout * gelu'(x), gelu' by a central difference of each element
// on its own (gelu is elementwise, so that is the full gradient).
Vec gelu_backward_ref(const Vec& start, const Vec& dout, const Vec& x) {
  const double h = 1e-5;
  Vec out(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    out[i] = start[i] + dout[i] * (gelu_ref(x[i] + h) - gelu_ref(x[i] - h)) / (2 * h);
  return out;
}

OpCase gelu_case(int64_t n, uint32_t seed, bool in_place, int64_t offset) {
  OpCase c;
  c.op = "gelu";
  c.label = "n=" + std::to_string(n) + (in_place ? " in place" : "") + (offset ? " misaligned" : "");
  Arg x = uniform("x", {n}, seed, -6.0, 6.0);
  x.offset = offset;
  Arg dx = uniform("dx", {n}, seed + 2);
  dx.offset = offset;
  c.args = {x, uniform("dout", {n}, seed + 1), dx};
  c.args.push_back(in_place ? alias("out", "x") : written("out", {n}));
  c.forward = [](Bound& b) { ops::gelu(b["out"], b["x"]); };
  c.backward = [](Bound& b) { ops::gelu_backward(b["dx"], b["dout"], b["x"]); };
  c.forward_checks = {{"out", 2e-6, 1e-5, 1e-2}};
  c.backward_checks = {{"dx", 1e-5, 1e-5, 1e-2}};
  c.reference = [](const Values& v) { return Values{{"out", gelu_all(v.at("x"))}}; };
  if (n < 100) {
    c.grads = {{"dx", "x", "out", "dout"}};
  } else {
    c.backward_reference = [](const Values& v) {
      return Values{{"dx", gelu_backward_ref(v.at("dx"), v.at("dout"), v.at("x"))}};
    };
  }
  if (in_place) {  // the reference's x is the start of out, which the forward overwrote: backward reads x
    c.backward = nullptr;
    c.backward_checks.clear();
    c.grads.clear();
    c.backward_reference = nullptr;
  }
  c.forward_bytes = [n](DType dt) { return 2 * bytes_of(Role::data, dt, static_cast<double>(n)); };
  c.backward_bytes = [n](DType dt) { return 4 * bytes_of(Role::data, dt, static_cast<double>(n)); };
  return c;
}

// dx may be dout itself: the gradient accumulated in place on the incoming one.
OpCase gelu_backward_on_dout(int64_t n) {
  OpCase c = gelu_case(n, 11, false, 0);
  c.label += " dx is dout";
  c.args.back() = written("out", {n});
  c.args[2] = alias("dx", "dout");
  c.forward_checks.clear();
  c.forward = [](Bound&) {};
  c.reference = [](const Values&) { return Values{}; };
  c.grads.clear();
  c.backward_reference = [](const Values& v) {
    return Values{{"dx", gelu_backward_ref(v.at("dout"), v.at("dout"), v.at("x"))}};
  };
  return c;
}

const bool registered =
    register_op({"gelu",
                 [] {
                   std::vector<OpCase> cases;
                   for (int64_t n : {1, 5, 7, 16, 17, 33, 1023, 1031, 100003}) {
                     cases.push_back(gelu_case(n, static_cast<uint32_t>(n), false, 0));
                     cases.push_back(gelu_case(n, static_cast<uint32_t>(n) + 7, true, 0));
                     cases.push_back(gelu_backward_on_dout(n));
                   }
                   cases.push_back(gelu_case(1031, 30, false, 1));
                   return cases;
                 },
                 [](const BenchScale& s) { return std::vector<OpCase>{gelu_case(s.elements, 1, false, 0)}; }});

}  // namespace
}  // namespace dtrain::op_cases
