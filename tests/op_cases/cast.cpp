// cast between f32, bf16 and f16: cases (rounding is compared bit for bit),
// the reference rounding of dtype.h, benchmark shapes.
#include "dtrain/dtype.h"
#include "dtrain/ops.h"
#include "op_case.h"

namespace dtrain::op_cases {
namespace {

Role role_of(DType dt) {
  return dt == DType::bf16 ? Role::bf16 : dt == DType::f16 ? Role::f16 : Role::f32;
}

double round_through(double x, DType dt) {
  const float f = static_cast<float>(x);
  if (dt == DType::bf16) return bf16_to_float(float_to_bf16(f));
  if (dt == DType::f16) return f16_to_float(float_to_f16(f));
  return f;
}

OpCase cast_case(int64_t n, DType from, DType to, double range) {
  OpCase c;
  c.op = "cast";
  c.label = std::string(dtype_name(from)) + " -> " + dtype_name(to) + " n=" + std::to_string(n);
  c.args = {uniform("x", {n}, 72, -range, range, role_of(from)), written("out", {n}, role_of(to))};
  c.forward = [](Bound& b) { ops::cast(b["out"], b["x"]); };
  // Both backends round the same way: bit-identical (f16 overflows to the same infinities).
  c.forward_checks = {{"out", 0.0, 0.0, 0.0}};
  c.reference = [to](const Values& v) {
    Vec out(v.at("x"));
    for (double& x : out) x = round_through(x, to);
    return Values{{"out", out}};
  };
  c.dtypes = {DType::f32};  // the dtypes are the case's own
  c.forward_bytes = [=](DType) {
    return bytes_of(role_of(from), from, static_cast<double>(n)) + bytes_of(role_of(to), to, static_cast<double>(n));
  };
  return c;
}

const bool registered = register_op({"cast",
                                     [] {
                                       std::vector<OpCase> cases;
                                       for (DType low : {DType::bf16, DType::f16}) {
                                         for (int64_t n : {int64_t{1}, int64_t{4099}, int64_t{300001}}) {
                                           cases.push_back(cast_case(n, DType::f32, low, 70000.0));
                                           cases.push_back(cast_case(n, low, DType::f32, 60000.0));
                                         }
                                       }
                                       cases.push_back(cast_case(4099, DType::bf16, DType::f16, 60000.0));
                                       cases.push_back(cast_case(4099, DType::bf16, DType::bf16, 100.0));
                                       return cases;
                                     },
                                     [](const BenchScale& s) {
                                       std::vector<OpCase> cases;
                                       for (DType low : {DType::bf16, DType::f16}) {
                                         cases.push_back(cast_case(s.elements, DType::f32, low, 1.0));
                                         cases.push_back(cast_case(s.elements, low, DType::f32, 1.0));
                                       }
                                       return cases;
                                     }});

}  // namespace
}  // namespace dtrain::op_cases
