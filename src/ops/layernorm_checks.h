// Internal: the argument checks layernorm and add_layernorm share
// (defined in src/ops/layernorm.cpp), so the two ops accept the same
// weights, biases and statistics and say so with the same messages.
#pragma once

#include "ops/checks.h"

namespace dtrain::ops::detail {

// mean/rstd are per-row statistics of x: shape [rows] or x.shape()[:-1], f32.
void check_layernorm_stats(const OpChecker& c, const Arg& s, const Arg& x);
// x (named as the op calls it) is a defined float tensor of at least one dimension; weight (and bias, when
// defined) are [C] in x's dtype.
void check_layernorm_x_weight_bias(const OpChecker& c, const Arg& x, const Tensor& weight, const Tensor& bias);

}  // namespace dtrain::ops::detail
