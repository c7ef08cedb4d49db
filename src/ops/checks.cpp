// Argument validation shared by the public ops (see checks.h).
#include "ops/checks.h"

#include <cmath>

namespace dtrain::ops::detail {

void OpChecker::fail(const std::string& message) const {
  DTRAIN_THROW(op_, ": ", message);
}

void OpChecker::defined(const Arg& a) const {
  if (!a.tensor.defined()) fail(detail::concat("argument '", a.name, "' is undefined; pass an allocated tensor"));
}

void OpChecker::shape(const Arg& a, const Shape& expected) const {
  if (a.tensor.shape() != expected) {
    fail(detail::concat("argument '", a.name, "' has the wrong shape: expected ", shape_str(expected), ", got ",
                        shape_str(a.tensor.shape())));
  }
}

void OpChecker::dim(const Arg& a, int64_t expected) const {
  if (a.tensor.dim() != expected) {
    fail(detail::concat("argument '", a.name, "' has the wrong number of dimensions: expected ", expected, ", got ",
                        a.tensor.dim(), " (", shape_str(a.tensor.shape()), ")"));
  }
}

void OpChecker::min_dim(const Arg& a, int64_t expected) const {
  if (a.tensor.dim() < expected) {
    fail(detail::concat("argument '", a.name, "' has too few dimensions: expected at least ", expected, ", got ",
                        a.tensor.dim(), " (", shape_str(a.tensor.shape()), ")"));
  }
}

void OpChecker::dtype(const Arg& a, DType expected) const {
  if (a.tensor.dtype() != expected) {
    fail(detail::concat("argument '", a.name, "' has the wrong dtype: expected ", dtype_name(expected), ", got ",
                        dtype_name(a.tensor.dtype())));
  }
}

void OpChecker::float_dtype(const Arg& a) const {
  const DType dt = a.tensor.dtype();
  if (dt != DType::f32 && dt != DType::bf16 && dt != DType::f16) {
    fail(detail::concat("argument '", a.name, "' has the wrong dtype: expected f32, bf16 or f16 on ",
                        a.tensor.device().str(), ", got ", dtype_name(dt)));
  }
}

void OpChecker::same_dtype(const Arg& a, const Arg& ref) const {
  if (a.tensor.dtype() != ref.tensor.dtype()) {
    fail(detail::concat("argument '", a.name, "' has the wrong dtype: expected ", dtype_name(ref.tensor.dtype()),
                        " (the dtype of '", ref.name, "'), got ", dtype_name(a.tensor.dtype())));
  }
}

void OpChecker::same_device(std::initializer_list<Arg> args) const {
  const Arg* first = nullptr;
  for (const Arg& a : args) {
    if (!a.tensor.defined()) continue;
    if (first == nullptr) {
      first = &a;
    } else if (a.tensor.device() != first->tensor.device()) {
      fail(detail::concat("argument '", a.name, "' is on the wrong device: expected ", first->tensor.device().str(),
                          " (the device of '", first->name, "'), got ", a.tensor.device().str(),
                          "; move it with Tensor::to"));
    }
  }
}

void OpChecker::no_overlap(const Arg& a, const Arg& b) const {
  if (a.tensor.defined() && b.tensor.defined() && a.tensor.overlaps(b.tensor)) {
    fail(detail::concat("argument '", a.name, "' overlaps argument '", b.name,
                        "' in memory: expected disjoint buffers; pass a separate output"));
  }
}

void OpChecker::same_or_disjoint(const Arg& a, const Arg& b) const {
  if (!a.tensor.defined() || !b.tensor.defined() || !a.tensor.overlaps(b.tensor)) return;
  if (a.tensor.data_ptr() != b.tensor.data_ptr() || a.tensor.nbytes() != b.tensor.nbytes()) {
    fail(detail::concat("argument '", a.name, "' partly overlaps argument '", b.name,
                        "': expected the same buffer (in place) or disjoint buffers"));
  }
}

void OpChecker::indices_in_range(const Arg& a, int64_t limit, const char* limit_name, bool has_allowed,
                                 int32_t allowed) const {
  const Tensor host = a.tensor.is_cpu() ? a.tensor : a.tensor.to(Device::cpu());
  const int32_t* p = host.data<int32_t>();
  for (int64_t i = 0; i < host.numel(); ++i) {
    const int32_t v = p[i];
    if ((v < 0 || v >= limit) && !(has_allowed && v == allowed)) {
      fail(detail::concat("argument '", a.name, "' element ", i, " is out of range: expected 0 <= value < ", limit,
                          " (", limit_name, ")", has_allowed ? detail::concat(" or ", allowed) : std::string(),
                          ", got ", v));
    }
  }
}

void OpChecker::finite(const char* name, double value) const {
  if (!std::isfinite(value)) {
    fail(detail::concat("argument '", name, "' must be finite, got ", value));
  }
}

}  // namespace dtrain::ops::detail
