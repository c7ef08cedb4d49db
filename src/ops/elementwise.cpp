// add / add_ / scale: validation and dispatch.
#include "ops/backends.h"
#include "ops/checks.h"
#include "ops/cpu_low_precision.h"

namespace dtrain::ops {

void add(Tensor& out, const Tensor& a, const Tensor& b) {
  const detail::OpChecker c("add");
  c.defined({"out", out});
  c.defined({"a", a});
  c.defined({"b", b});
  c.float_dtype({"a", a});
  c.same_dtype({"b", b}, {"a", a});
  c.same_dtype({"out", out}, {"a", a});
  c.same_device({{"out", out}, {"a", a}, {"b", b}});
  c.shape({"b", b}, a.shape());
  c.shape({"out", out}, a.shape());
  c.same_or_disjoint({"out", out}, {"a", a});
  c.same_or_disjoint({"out", out}, {"b", b});
  if (out.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::add(out, a, b));
  } else {
    detail::run_cpu_in_f32(cpu::add, out, a, b);
  }
}

void add_(Tensor& y, const Tensor& x, float alpha) {
  const detail::OpChecker c("add_");
  c.defined({"y", y});
  c.defined({"x", x});
  c.float_dtype({"y", y});
  c.same_dtype({"x", x}, {"y", y});
  c.same_device({{"y", y}, {"x", x}});
  c.shape({"x", x}, y.shape());
  c.same_or_disjoint({"y", y}, {"x", x});
  c.finite("alpha", alpha);
  if (y.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::add_(y, x, alpha));
  } else {
    detail::run_cpu_in_f32(cpu::add_, y, x, alpha);
  }
}

void scale(Tensor& out, const Tensor& x, float alpha) {
  const detail::OpChecker c("scale");
  c.defined({"out", out});
  c.defined({"x", x});
  c.float_dtype({"x", x});
  c.same_dtype({"out", out}, {"x", x});
  c.same_device({{"out", out}, {"x", x}});
  c.shape({"out", out}, x.shape());
  c.same_or_disjoint({"out", out}, {"x", x});
  c.finite("alpha", alpha);
  if (out.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::scale(out, x, alpha));
  } else {
    detail::run_cpu_in_f32(cpu::scale, out, x, alpha);
  }
}

}  // namespace dtrain::ops
