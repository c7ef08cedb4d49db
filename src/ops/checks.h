// Argument validation shared by the public ops (src/ops/<op>.cpp).
//
// Every check throws dtrain::Error with a message of the form
//   "<op>: argument '<arg>' <what>: expected <x>, got <y>"
// so a caller can tell which op and which argument was wrong without a debugger.
// Backends run only after all checks passed and may assume valid inputs.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>

#include "dtrain/tensor.h"

namespace dtrain::ops::detail {

using ::dtrain::detail::concat;

// A named tensor argument of an op.
struct Arg {
  const char* name;
  const Tensor& tensor;
};

class OpChecker {
 public:
  explicit OpChecker(const char* op) : op_(op) {}

  // The tensor must be defined (not a default-constructed Tensor).
  void defined(const Arg& a) const;
  // The tensor must have exactly this shape.
  void shape(const Arg& a, const Shape& expected) const;
  // The tensor must have this many dimensions.
  void dim(const Arg& a, int64_t expected) const;
  // The tensor must have at least this many dimensions.
  void min_dim(const Arg& a, int64_t expected) const;
  void dtype(const Arg& a, DType expected) const;
  // Activation/weight dtype: f32, bf16 or f16 (on the CPU the low-precision
  // ones are computed in f32 and rounded back, see cpu_low_precision.h).
  void float_dtype(const Arg& a) const;
  // Same dtype as the reference argument.
  void same_dtype(const Arg& a, const Arg& ref) const;
  // Every defined tensor of the list lives on the same device.
  void same_device(std::initializer_list<Arg> args) const;
  // The two tensors' memory must not overlap (checked only when both are defined).
  void no_overlap(const Arg& a, const Arg& b) const;
  // The two tensors may be the very same memory (in-place) but must not partly overlap.
  void same_or_disjoint(const Arg& a, const Arg& b) const;
  // Every element of an i32 tensor lies in [0, limit) or equals `allowed` (e.g. an
  // ignore index). CUDA tensors are copied to the host for the check.
  void indices_in_range(const Arg& a, int64_t limit, const char* limit_name, bool has_allowed = false,
                        int32_t allowed = 0) const;
  // A scalar argument must be finite.
  void finite(const char* name, double value) const;
  // Generic failure naming the op.
  [[noreturn]] void fail(const std::string& message) const;

  const char* op() const { return op_; }

 private:
  const char* op_;
};

}  // namespace dtrain::ops::detail
