// clip_coefficient: cases (clipping active and not, with and without a loss
// scale), the formula in double. On the GPU the CUDA op must give the CPU op's
// value (both use IEEE sqrt and division), which the engine relies on for the
// same bits with its norm on the device.
#include <cmath>

#include "dtrain/ops.h"
#include "op_case.h"

namespace dtrain::op_cases {
namespace {

OpCase clip_case(float max_norm, float loss_scale, double lo, double hi, uint32_t seed) {
  OpCase c;
  c.op = "clip_coefficient";
  c.label = "max_norm " + std::to_string(max_norm) + ", loss scale " + std::to_string(loss_scale);
  c.args = {uniform("norm_squared", {1}, seed, lo, hi, Role::f32), written("out", {1}, Role::f32)};
  c.forward = [max_norm, loss_scale](Bound& b) {
    ops::clip_coefficient(b["out"], b.at("norm_squared"), max_norm, loss_scale);
  };
  // Relative: the coefficient is about 1 / loss_scale.
  c.forward_checks = {{"out", 1e-6, 1e-7, 1e-7, 0.0, 0.0}};
  c.reference = [max_norm, loss_scale](const Values& v) {
    const double norm = std::sqrt(v.at("norm_squared")[0]) / loss_scale;
    const double clip = (max_norm <= 0.0f || norm <= max_norm) ? 1.0 : max_norm / (norm + 1e-6);
    return Values{{"out", Vec{clip / loss_scale}}};
  };
  c.dtypes = {DType::f32};  // f32 in and out whatever the model's dtype
  c.forward_bytes = [](DType) { return 8.0; };
  return c;
}

const bool registered =
    register_op({"clip_coefficient",
                 [] {
                   return std::vector<OpCase>{clip_case(0.5f, 1.0f, 1.0, 4.0, 11),      // clipped
                                              clip_case(10.0f, 1.0f, 1.0, 4.0, 12),     // not clipped
                                              clip_case(0.0f, 1.0f, 1.0, 4.0, 13),      // clipping off
                                              clip_case(1.0f, 1024.0f, 1e6, 4e6, 14)};  // f16-like loss scale
                 },
                 {}});

}  // namespace
}  // namespace dtrain::op_cases
