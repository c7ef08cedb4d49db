// layernorm and layernorm_backward: cases, a naive loop in double
// (layernorm_reference.h), benchmark shapes.
#include <cmath>

#include "dtrain/ops.h"
#include "layernorm_reference.h"
#include "op_case.h"

namespace dtrain::op_cases {
namespace {

OpCase layernorm_case(const Shape& lead, int64_t ch, bool with_bias, uint32_t seed, bool finite_differences) {
  const int64_t rows = shape_numel(lead);
  Shape xs = lead;
  xs.push_back(ch);
  OpCase c;
  c.op = "layernorm";
  c.label = shape_str(xs) + (with_bias ? "" : " no bias");
  c.args = {uniform("x", xs, seed, -2.0, 3.0),
            uniform("weight", {ch}, seed + 1),
            with_bias ? uniform("bias", {ch}, seed + 2) : undefined("bias"),
            written("out", xs),
            written("mean", lead, Role::f32),
            written("rstd", {rows}, Role::f32),
            uniform("dout", xs, seed + 3),
            uniform("dx", xs, seed + 4),
            uniform("dweight", {ch}, seed + 5),
            with_bias ? uniform("dbias", {ch}, seed + 6) : undefined("dbias")};
  c.forward = [](Bound& b) { ops::layernorm(b["out"], b["mean"], b["rstd"], b["x"], b["weight"], b["bias"], 1e-5f); };
  c.backward = [](Bound& b) {
    ops::layernorm_backward(b["dx"], b["dweight"], b["dbias"], b["dout"], b["x"], b["weight"], b["mean"], b["rstd"]);
  };
  // rstd can be large (1/sqrt(eps) when ch = 1): compared relative to its largest value.
  c.forward_checks = {{"out", 1e-5, 1e-5, 1e-2},
                      {"mean", 1e-6, 1e-5, 1e-5},
                      {"rstd", 1e-4, 1e-4 * (ch == 1 ? 400.0 : 1.0), 1e-4 * (ch == 1 ? 400.0 : 1.0), 1.0, 0.0}};
  c.reference = [=](const Values& v) {
    const LayernormRef r =
        layernorm_ref(v.at("x"), v.at("weight"), with_bias ? &v.at("bias") : nullptr, rows, ch, 1e-5);
    return Values{{"out", r.out}, {"mean", r.mean}, {"rstd", r.rstd}};
  };
  c.backward_checks = {{"dx", 1e-4, 1e-4, 2e-2}, {"dweight", 1e-5, 1e-4, 2e-2}};
  if (with_bias) c.backward_checks.push_back({"dbias", 1e-5, 1e-5, 1e-2});
  if (finite_differences) {  // otherwise backward is compared across backends only
    c.grads = {{"dx", "x", "out", "dout"}, {"dweight", "weight", "out", "dout"}};
    if (with_bias) c.grads.push_back({"dbias", "bias", "out", "dout"});
  }
  const double n = static_cast<double>(rows * ch);
  // x read, out written, mean and rstd written; backward: x, dout read, dx read + written, mean/rstd read.
  c.forward_bytes = [=](DType dt) { return 2 * bytes_of(Role::data, dt, n) + 8.0 * rows; };
  c.backward_bytes = [=](DType dt) { return 4 * bytes_of(Role::data, dt, n) + 8.0 * rows; };
  return c;
}

const bool registered = register_op(
    {"layernorm",
     [] {
       std::vector<OpCase> cases;
       uint32_t seed = 1;
       // Forward: odd shapes; the CUDA kernel's scalar path (67, 1), fused vector path for each chunk count
       // (256, 768, 2048), unfused vector path (2056) and more rows than one wave (4099 x 768).
       const std::pair<Shape, int64_t> forward_only[] = {{{1}, 1},      {{3}, 5},     {{2, 3}, 17}, {{4}, 64},
                                                         {{1, 2}, 769}, {{3, 5}, 67}, {{17}, 256},  {{6}, 2048},
                                                         {{3}, 2056},   {{4099}, 768}};
       for (const auto& [lead, ch] : forward_only)
         for (bool bias : {true, false}) cases.push_back(layernorm_case(lead, ch, bias, seed += 10, false));
       // Backward by finite differences: small shapes.
       const std::pair<Shape, int64_t> with_backward[] = {{{1}, 2}, {{3}, 5}, {{2, 2}, 7}, {{1}, 16}, {{5}, 3}};
       for (const auto& [lead, ch] : with_backward) cases.push_back(layernorm_case(lead, ch, true, seed += 10, true));
       return cases;
     },
     [](const BenchScale& s) {
       return std::vector<OpCase>{layernorm_case({s.elements / s.channels}, s.channels, true, 1, true)};
     }});

}  // namespace
}  // namespace dtrain::op_cases
