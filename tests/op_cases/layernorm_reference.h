// The naive layernorm in double, shared by the layernorm and add_layernorm
// op cases (tests/op_cases/layernorm.cpp, add_layernorm.cpp).
#pragma once

#include <cmath>
#include <cstdint>

#include "op_case.h"

namespace dtrain::op_cases {

struct LayernormRef {
  Vec out, mean, rstd;
};

// out = (x - mean) * rstd * w + b per row of ch values (b may be null).
inline LayernormRef layernorm_ref(const Vec& x, const Vec& w, const Vec* b, int64_t rows, int64_t ch, double eps) {
  LayernormRef r;
  r.out.resize(x.size());
  for (int64_t row = 0; row < rows; ++row) {
    const double* xr = x.data() + row * ch;
    double m = 0.0, v = 0.0;
    for (int64_t i = 0; i < ch; ++i) m += xr[i];
    m /= static_cast<double>(ch);
    for (int64_t i = 0; i < ch; ++i) v += (xr[i] - m) * (xr[i] - m);
    const double s = 1.0 / std::sqrt(v / static_cast<double>(ch) + eps);
    for (int64_t i = 0; i < ch; ++i) r.out[row * ch + i] = (xr[i] - m) * s * w[i] + (b ? (*b)[i] : 0.0);
    r.mean.push_back(m);
    r.rstd.push_back(s);
  }
  return r;
}

}  // namespace dtrain::op_cases
