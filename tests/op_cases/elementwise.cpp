// add, add_ and scale: cases, direct loops in double, benchmark shapes.
#include "dtrain/ops.h"
#include "op_case.h"

namespace dtrain::op_cases {
namespace {

OpCase add_case(int64_t n, bool in_place) {
  OpCase c;
  c.op = "add";
  c.label = "n=" + std::to_string(n) + (in_place ? " in place" : "");
  c.args = {uniform("a", {n}, 1), uniform("b", {n}, 2)};
  c.args.push_back(in_place ? alias("out", "a") : written("out", {n}));
  c.forward = [](Bound& b) { ops::add(b["out"], b["a"], b["b"]); };
  // The f32 sum is exact up to its one rounding: compared bit for bit.
  c.forward_checks = {{"out", 0.0, 0.0, 1e-2}};
  c.reference = [](const Values& v) {
    Vec out(v.at("a").size());
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(v.at("a")[i] + v.at("b")[i]);
    return Values{{"out", out}};
  };
  c.forward_bytes = [n](DType dt) { return 3 * bytes_of(Role::data, dt, static_cast<double>(n)); };
  return c;
}

OpCase add_inplace_case(int64_t n) {
  OpCase c;
  c.op = "add_";
  c.label = "n=" + std::to_string(n);
  c.args = {uniform("y", {n}, 1), uniform("x", {n}, 2)};
  c.forward = [](Bound& b) { ops::add_(b["y"], b["x"], -0.3f); };
  c.forward_checks = {{"y", 1e-7, 1e-6, 1e-2}};
  c.reference = [](const Values& v) {
    Vec out(v.at("y"));
    for (size_t i = 0; i < out.size(); ++i) out[i] += static_cast<double>(-0.3f) * v.at("x")[i];
    return Values{{"y", out}};
  };
  c.forward_bytes = [n](DType dt) { return 3 * bytes_of(Role::data, dt, static_cast<double>(n)); };
  return c;
}

OpCase scale_case(int64_t n, bool in_place) {
  OpCase c;
  c.op = "scale";
  c.label = "n=" + std::to_string(n) + (in_place ? " in place" : "");
  c.args = {uniform("x", {n}, 1)};
  c.args.push_back(in_place ? alias("out", "x") : written("out", {n}));
  c.forward = [](Bound& b) { ops::scale(b["out"], b["x"], 1.7f); };
  c.forward_checks = {{"out", 1e-7, 1e-6, 1e-2}};
  c.reference = [](const Values& v) {
    Vec out(v.at("x"));
    for (double& x : out) x *= static_cast<double>(1.7f);
    return Values{{"out", out}};
  };
  c.forward_bytes = [n](DType dt) { return 2 * bytes_of(Role::data, dt, static_cast<double>(n)); };
  return c;
}

const int64_t kSizes[] = {1, 15, 1000, 1031, 4099, 100003};

const bool add_registered =
    register_op({"add",
                 [] {
                   std::vector<OpCase> cases;
                   for (int64_t n : kSizes)
                     for (bool in_place : {false, true}) cases.push_back(add_case(n, in_place));
                   return cases;
                 },
                 [](const BenchScale& s) { return std::vector<OpCase>{add_case(s.elements, false)}; }});

const bool add_inplace_registered = register_op({"add_",
                                                 [] {
                                                   std::vector<OpCase> cases;
                                                   for (int64_t n : kSizes) cases.push_back(add_inplace_case(n));
                                                   return cases;
                                                 },
                                                 nullptr});

const bool scale_registered = register_op({"scale",
                                           [] {
                                             std::vector<OpCase> cases;
                                             for (int64_t n : kSizes)
                                               for (bool in_place : {false, true})
                                                 cases.push_back(scale_case(n, in_place));
                                             return cases;
                                           },
                                           nullptr});

}  // namespace
}  // namespace dtrain::op_cases
