// add_layernorm: cases, a naive loop in double (the sum, then
// layernorm_reference.h), benchmark shapes. Its backward is layernorm_backward
// on the stored residual, accumulating into the residual's gradient, which is
// checked here by finite differences with respect to `a`.
#include "dtrain/ops.h"
#include "layernorm_reference.h"
#include "op_case.h"

namespace dtrain::op_cases {
namespace {

enum class InPlace { no, over_a, over_b };

OpCase add_layernorm_case(const Shape& lead, int64_t ch, bool with_bias, InPlace in_place, uint32_t seed,
                          bool finite_differences) {
  const int64_t rows = shape_numel(lead);
  Shape xs = lead;
  xs.push_back(ch);
  OpCase c;
  c.op = "add_layernorm";
  c.label = shape_str(xs) + (with_bias ? "" : " no bias") +
            (in_place == InPlace::over_a   ? " residual=a"
             : in_place == InPlace::over_b ? " residual=b"
                                           : "");
  c.args = {uniform("a", xs, seed, -2.0, 3.0), uniform("b", xs, seed + 1, -1.0, 1.5), uniform("weight", {ch}, seed + 2),
            with_bias ? uniform("bias", {ch}, seed + 3) : undefined("bias")};
  if (in_place == InPlace::no) {
    c.args.push_back(written("residual", xs));
  } else {
    c.args.push_back(alias("residual", in_place == InPlace::over_a ? "a" : "b"));
  }
  c.args.insert(c.args.end(),
                {written("out", xs), written("mean", lead, Role::f32), written("rstd", {rows}, Role::f32),
                 uniform("dout", xs, seed + 4), uniform("dresidual", xs, seed + 5), uniform("dweight", {ch}, seed + 6),
                 with_bias ? uniform("dbias", {ch}, seed + 7) : undefined("dbias")});
  c.forward = [](Bound& b) {
    ops::add_layernorm(b["residual"], b["out"], b["mean"], b["rstd"], b["a"], b["b"], b["weight"], b["bias"], 1e-5f);
  };
  c.backward = [](Bound& b) {
    ops::layernorm_backward(b["dresidual"], b["dweight"], b["dbias"], b["dout"], b["residual"], b["weight"], b["mean"],
                            b["rstd"]);
  };
  // The residual is one rounding of the exact sum (the reference keeps it exact, for the finite
  // differences): within half an f32 ulp of it, and bit for bit between backends in f32.
  // The mean is an f32 sum of the rounded residual over C = 768 values: a
  // sequential sum (a compiler that does not vectorise it, as at -O1) is off by
  // about sqrt(C) * 2^-24 = 1.7e-6 relative, so 1e-6 fails there; 1e-5 is six
  // times that, and still far below one bf16 ulp.
  c.forward_checks = {{"residual", 1e-7, 0.0, 1e-2},
                      {"out", 1e-5, 1e-5, 1e-2},
                      {"mean", 1e-5, 1e-5, 1e-5},
                      {"rstd", 1e-4, 1e-4 * (ch == 1 ? 400.0 : 1.0), 1e-4 * (ch == 1 ? 400.0 : 1.0), 1.0, 0.0}};
  c.reference = [=](const Values& v) {
    const Vec& a = v.at("a");
    const Vec& b = v.at("b");
    Vec residual(a.size());
    for (size_t i = 0; i < a.size(); ++i) residual[i] = a[i] + b[i];
    const LayernormRef r = layernorm_ref(residual, v.at("weight"), with_bias ? &v.at("bias") : nullptr, rows, ch, 1e-5);
    return Values{{"residual", residual}, {"out", r.out}, {"mean", r.mean}, {"rstd", r.rstd}};
  };
  c.backward_checks = {{"dresidual", 1e-4, 1e-4, 2e-2}, {"dweight", 1e-5, 1e-4, 2e-2}};
  if (with_bias) c.backward_checks.push_back({"dbias", 1e-5, 1e-5, 1e-2});
  if (finite_differences) {
    // d out / d a = d out / d residual: the residual's gradient gains exactly that.
    c.grads = {{"dresidual", "a", "out", "dout"}, {"dweight", "weight", "out", "dout"}};
    if (with_bias) c.grads.push_back({"dbias", "bias", "out", "dout"});
  }
  const double n = static_cast<double>(rows * ch);
  // a, b read, residual and out written, mean/rstd written; backward as layernorm's.
  c.forward_bytes = [=](DType dt) { return 4 * bytes_of(Role::data, dt, n) + 8.0 * rows; };
  c.backward_bytes = [=](DType dt) { return 4 * bytes_of(Role::data, dt, n) + 8.0 * rows; };
  return c;
}

const bool registered = register_op(
    {"add_layernorm",
     [] {
       std::vector<OpCase> cases;
       uint32_t seed = 7;
       // Forward: odd widths (the CUDA kernel's scalar path: 1, 5, 17, 67, 769), vector widths
       // (64, 256, 768, 2048, 2056) and more rows than one wave (4099 x 768).
       const std::pair<Shape, int64_t> forward_only[] = {{{1}, 1},      {{3}, 5},     {{2, 3}, 17}, {{4}, 64},
                                                         {{1, 2}, 769}, {{3, 5}, 67}, {{17}, 256},  {{6}, 2048},
                                                         {{3}, 2056},   {{4099}, 768}};
       for (const auto& [lead, ch] : forward_only)
         for (bool bias : {true, false})
           cases.push_back(add_layernorm_case(lead, ch, bias, InPlace::no, seed += 10, false));
       for (InPlace where : {InPlace::over_a, InPlace::over_b}) {
         cases.push_back(add_layernorm_case(Shape{5}, 64, true, where, seed += 10, false));
         cases.push_back(add_layernorm_case(Shape{3}, 67, true, where, seed += 10, false));
       }
       // Backward by finite differences: small shapes.
       const std::pair<Shape, int64_t> with_backward[] = {{{1}, 2}, {{3}, 5}, {{2, 2}, 7}, {{1}, 16}, {{5}, 3}};
       for (const auto& [lead, ch] : with_backward)
         cases.push_back(add_layernorm_case(lead, ch, true, InPlace::no, seed += 10, true));
       cases.push_back(add_layernorm_case(Shape{2}, 6, false, InPlace::over_a, seed += 10, true));
       return cases;
     },
     [](const BenchScale& s) {
       return std::vector<OpCase>{
           add_layernorm_case({s.elements / s.channels}, s.channels, true, InPlace::no, 1, true)};
     }});

}  // namespace
}  // namespace dtrain::op_cases
