#include "dtrain/nn/parameter.h"

namespace dtrain::nn {

Parameter::Parameter(std::string name, Tensor value_in, bool weight_decay)
    : value(std::move(value_in)), name_(std::move(name)), weight_decay_(weight_decay) {
  DTRAIN_CHECK(value.defined(), "parameter '", name_, "' was created from an undefined tensor");
  shape_ = value.shape();
  dtype_ = value.dtype();
  device_ = value.device();
}

Parameter::Parameter(std::string name, Shape shape, DType dtype, Device device, bool weight_decay)
    : name_(std::move(name)), shape_(std::move(shape)), dtype_(dtype), device_(device), weight_decay_(weight_decay) {}

void Parameter::check_compatible(const Tensor& t, const char* what) const {
  DTRAIN_CHECK(t.defined(), "rebinding the ", what, " of parameter '", name_, "' to an undefined tensor");
  DTRAIN_CHECK(t.shape() == shape_ && t.dtype() == dtype_ && t.device() == device_, "rebinding the ", what,
               " of parameter '", name_, "': expected ", dtype_name(dtype_), shape_str(shape_), " on ", device_.str(),
               ", got ", t.describe(), " (reshape the flat view to the parameter's shape)");
}

void Parameter::rebind_value(const Tensor& new_value, bool copy_contents) {
  check_compatible(new_value, "value");
  if (copy_contents && value.defined()) Tensor(new_value).copy_(value);
  value = new_value;
}

void Parameter::rebind_grad(const Tensor& new_grad, bool copy_contents) {
  check_compatible(new_grad, "grad");
  if (copy_contents && grad.defined()) Tensor(new_grad).copy_(grad);
  grad = new_grad;
}

void Parameter::rebind(const Tensor& new_value, const Tensor& new_grad, bool copy_contents) {
  rebind_value(new_value, copy_contents);
  if (new_grad.defined()) rebind_grad(new_grad, copy_contents);
}

const Tensor& Parameter::require_value() const {
  DTRAIN_CHECK(value.defined(), "parameter '", name_,
               "' has no value right now (released by an engine between uses?); gather it before the module runs");
  return value;
}

Tensor& Parameter::require_grad() {
  DTRAIN_CHECK(grad.defined(), "parameter '", name_,
               "' has no gradient buffer; bind one (rebind_grad) before backward");
  return grad;
}

}  // namespace dtrain::nn
