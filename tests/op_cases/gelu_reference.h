// GELU (tanh approximation) in double: the reference of gelu, linear_gelu and
// matmul_dgelu_bgrad's cases.
#pragma once

#include <cmath>

namespace dtrain::op_cases {

inline double gelu_ref(double x) {
  const double s = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1.0 + std::tanh(s * (x + 0.044715 * x * x * x)));
}

}  // namespace dtrain::op_cases
