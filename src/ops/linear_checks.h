// Internal: the argument checks linear, linear_backward and linear_gelu share.
#pragma once

#include "ops/checks.h"

namespace dtrain::ops::detail {

// Checks x [..., IC], weight [OC, IC], bias [OC] (optional); returns the shape of out.
inline Shape check_linear_inputs(const detail::OpChecker& c, const Tensor& x, const Tensor& weight,
                                 const Tensor& bias) {
  c.defined({"x", x});
  c.defined({"weight", weight});
  c.float_dtype({"x", x});
  c.same_dtype({"weight", weight}, {"x", x});
  c.min_dim({"x", x}, 1);
  c.dim({"weight", weight}, 2);
  const int64_t ic = x.size(-1);
  const int64_t oc = weight.size(0);
  if (weight.size(1) != ic) {
    c.fail(detail::concat("argument 'weight' has the wrong shape: expected [OC, ", ic, "] (IC from 'x' ",
                          shape_str(x.shape()), "), got ", shape_str(weight.shape())));
  }
  if (bias.defined()) {
    c.same_dtype({"bias", bias}, {"x", x});
    c.shape({"bias", bias}, {oc});
  }
  Shape out = x.shape();
  out.back() = oc;
  return out;
}

}  // namespace dtrain::ops::detail
