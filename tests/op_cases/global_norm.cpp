// global_norm_squared over several tensors (f32 and bf16 mixed): cases, the
// sum of squares in double, benchmark shapes.
#include "dtrain/ops.h"
#include "op_case.h"

namespace dtrain::op_cases {
namespace {

OpCase global_norm_case(const std::vector<std::pair<Shape, Role>>& tensors, uint32_t seed) {
  OpCase c;
  c.op = "global_norm_squared";
  double elements = 0.0;
  std::vector<std::string> names;
  for (size_t i = 0; i < tensors.size(); ++i) {
    names.push_back("t" + std::to_string(i));
    c.args.push_back(
        uniform(names.back(), tensors[i].first, seed + static_cast<uint32_t>(i), -1.0, 1.0, tensors[i].second));
    c.label += (i ? " " : "") + shape_str(tensors[i].first);
    elements += static_cast<double>(shape_numel(tensors[i].first));
  }
  c.args.push_back(written("out", {1}, Role::f32));
  c.forward = [names](Bound& b) {
    std::vector<Tensor> list;
    for (const std::string& n : names) list.push_back(b[n]);
    ops::global_norm_squared(b["out"], list);
  };
  // Relative (floor 0): the sum is large.
  c.forward_checks = {{"out", 1e-6, 1e-5, 1e-5, 0.0, 0.0}};
  c.reference = [names](const Values& v) {
    double s = 0.0;
    for (const std::string& n : names)
      for (double x : v.at(n)) s += x * x;
    return Values{{"out", Vec{s}}};
  };
  c.dtypes = {DType::f32};  // each tensor's dtype is its own
  c.forward_bytes = [elements](DType dt) { return bytes_of(Role::data, dt, elements); };
  return c;
}

const bool registered = register_op(
    {"global_norm_squared",
     [] {
       return std::vector<OpCase>{
           global_norm_case(
               {{{1}, Role::f32}, {{5}, Role::f32}, {{1000}, Role::f32}, {{200003}, Role::f32}, {{7, 11}, Role::bf16}},
               3),
           global_norm_case({{{1000}, Role::f32}, {{3, 5}, Role::bf16}, {{70001}, Role::f32}}, 120)};
     },
     [](const BenchScale& s) {
       return std::vector<OpCase>{global_norm_case({{{s.elements}, Role::data}}, 1)};
     }});

}  // namespace
}  // namespace dtrain::op_cases
