// gelu / gelu_backward: validation and dispatch.
#include "ops/backends.h"
#include "ops/checks.h"
#include "ops/cpu_low_precision.h"

namespace dtrain::ops {

void gelu(Tensor& out, const Tensor& x) {
  const detail::OpChecker c("gelu");
  c.defined({"x", x});
  c.defined({"out", out});
  c.float_dtype({"x", x});
  c.same_dtype({"out", out}, {"x", x});
  c.same_device({{"out", out}, {"x", x}});
  c.shape({"out", out}, x.shape());
  c.same_or_disjoint({"out", out}, {"x", x});  // elementwise: in place is fine
  if (x.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::gelu(out, x));
  } else {
    detail::run_cpu_in_f32(cpu::gelu, out, x);
  }
}

void gelu_backward(Tensor& dx, const Tensor& dout, const Tensor& x) {
  const detail::OpChecker c("gelu_backward");
  c.defined({"x", x});
  c.defined({"dout", dout});
  c.defined({"dx", dx});
  c.float_dtype({"x", x});
  c.same_dtype({"dout", dout}, {"x", x});
  c.same_dtype({"dx", dx}, {"x", x});
  c.same_device({{"dx", dx}, {"dout", dout}, {"x", x}});
  c.shape({"dout", dout}, x.shape());
  c.shape({"dx", dx}, x.shape());
  // dx += f(dout, x) elementwise: dx may be dout itself, but not x (x must stay intact for its own reads).
  c.same_or_disjoint({"dx", dx}, {"dout", dout});
  c.no_overlap({"dx", dx}, {"x", x});
  if (x.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::gelu_backward(dx, dout, x));
  } else {
    detail::run_cpu_in_f32(cpu::gelu_backward, dx, dout, x);
  }
}

}  // namespace dtrain::ops
