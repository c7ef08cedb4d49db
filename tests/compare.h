// The one numeric comparison of the test suite.
//
// Why one: a comparison that silently drops NaN turns every test that uses it
// into a test that cannot fail (std::max(d, NaN) is d, and std::fmax ignores
// NaN by definition). Every op test, every CPU-vs-CUDA check, every
// data-parallel equality check and the whole-model gradient check go through
// compare() below, so the rules are stated once:
//
//   error = max_i |got_i - ref_i| / max(floor, max_i |ref_i|)
//
// - floor = 1 (the default) is the suite's normalised error: absolute for
//   tensors of small values, relative for large ones. floor = 0 makes it
//   relative to the largest reference value, for tensors whose values are all
//   small (a cross-entropy gradient of a wide vocabulary: every term is ~1e-3,
//   so an absolute tolerance of 1e-3 would accept anything).
// - A NaN or Inf in `got` where `ref` is finite fails, and the message names
//   the first such index. Where `ref` itself is not finite, `got` must be the
//   same (both NaN, or the same infinity).
// - Different sizes or shapes fail before any value is looked at.
// - The message names the worst element (index, got, expected) and the error.
//
// Tolerances per dtype. The rounding unit u = 2^-p (p = significand bits) is
//   f32 2^-24 = 6.0e-8,  f16 2^-11 = 4.9e-4,  bf16 2^-8 = 3.9e-3.
// A check of an op computed in dtype dt against an f32/double reference has
// error ~ k * u(dt), where k counts the roundings that reach one output (the
// op's depth) and the input roundings; tests state their tolerance per op for
// f32 and for bf16 (tolerance_for below), and f16's follows from bf16's by
// the ratio of the rounding units (1/8) times 2, because f16 intermediates
// re-rounded inside the kernels (and its narrower exponent range near the
// test's extremes) cost a little more than the ratio alone.
#pragma once

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "dtrain/tensor.h"

namespace dtrain::testing {

inline double rounding_unit(DType dt) {
  switch (dt) {
    case DType::f32:
      return 0x1p-24;
    case DType::f16:
      return 0x1p-11;
    case DType::bf16:
      return 0x1p-8;
    default:
      return 0.0;  // integers compare exactly
  }
}

// The tolerance of one op's check in dtype dt, given what the test states for
// f32 and for bf16 (f16 derived, see the header comment).
inline double tolerance_for(DType dt, double f32_tol, double bf16_tol) {
  switch (dt) {
    case DType::f32:
      return f32_tol;
    case DType::bf16:
      return bf16_tol;
    case DType::f16:
      return bf16_tol * 2.0 * rounding_unit(DType::f16) / rounding_unit(DType::bf16);
    default:
      return 0.0;
  }
}

struct Comparison {
  bool ok = true;
  double error = 0.0;  // the normalised error over the finite pairs
  std::string message;
};

inline std::string shape_text(const Shape& s) {
  std::ostringstream o;
  o << '[';
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << ']';
  return o.str();
}

inline bool same_non_finite(double got, double ref) {
  if (std::isnan(ref)) return std::isnan(got);
  return got == ref;  // the same infinity
}

inline Comparison compare(const double* got, size_t n_got, const double* ref, size_t n_ref, double tol,
                          double floor = 1.0) {
  Comparison c;
  std::ostringstream msg;
  if (n_got != n_ref) {
    c.ok = false;
    c.error = INFINITY;
    msg << "size mismatch: got " << n_got << " elements, expected " << n_ref;
    c.message = msg.str();
    return c;
  }
  double max_diff = 0.0, max_ref = floor;
  size_t worst = 0;
  for (size_t i = 0; i < n_got; ++i) {
    const bool ref_finite = std::isfinite(ref[i]);
    if (!std::isfinite(got[i]) || !ref_finite) {
      if (ref_finite || !same_non_finite(got[i], ref[i])) {
        c.ok = false;
        c.error = INFINITY;
        msg << "element " << i << " is " << got[i] << ", expected " << ref[i] << " (first non-finite mismatch of "
            << n_got << ")";
        c.message = msg.str();
        return c;
      }
      continue;
    }
    const double d = std::fabs(got[i] - ref[i]);
    if (d > max_diff) {
      max_diff = d;
      worst = i;
    }
    if (std::fabs(ref[i]) > max_ref) max_ref = std::fabs(ref[i]);
  }
  c.error = max_ref > 0.0 ? max_diff / max_ref : (max_diff > 0.0 ? INFINITY : 0.0);
  c.ok = c.error <= tol;
  msg << "normalised error " << c.error << " (tolerance " << tol << ", floor " << floor << ")";
  if (n_got > 0) msg << "; worst element " << worst << ": got " << got[worst] << ", expected " << ref[worst];
  c.message = msg.str();
  return c;
}

inline Comparison compare(const std::vector<double>& got, const std::vector<double>& ref, double tol,
                          double floor = 1.0) {
  return compare(got.data(), got.size(), ref.data(), ref.size(), tol, floor);
}

inline std::vector<double> as_doubles(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

inline std::vector<double> as_doubles(const Tensor& t) {
  const Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());
  std::vector<double> v(static_cast<size_t>(host.numel()));
  for (int64_t i = 0; i < host.numel(); ++i) v[static_cast<size_t>(i)] = host.item(i);
  return v;
}

inline Comparison compare(const std::vector<float>& got, const std::vector<float>& ref, double tol,
                          double floor = 1.0) {
  return compare(as_doubles(got), as_doubles(ref), tol, floor);
}

// Tensors: shapes must match exactly; values as above, whatever the dtypes.
inline Comparison compare(const Tensor& got, const Tensor& ref, double tol, double floor = 1.0) {
  if (got.shape() != ref.shape()) {
    Comparison c;
    c.ok = false;
    c.error = INFINITY;
    c.message = "shape mismatch: got " + shape_text(got.shape()) + ", expected " + shape_text(ref.shape());
    return c;
  }
  return compare(as_doubles(got), as_doubles(ref), tol, floor);
}

inline Comparison compare(const Tensor& got, const std::vector<double>& ref, double tol, double floor = 1.0) {
  return compare(as_doubles(got), ref, tol, floor);
}

}  // namespace dtrain::testing
