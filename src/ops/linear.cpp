// linear / linear_backward: validation and dispatch.
#include "ops/backends.h"
#include "ops/checks.h"
#include "ops/cpu_low_precision.h"
#include "ops/linear_checks.h"

namespace dtrain::ops {

void linear(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const detail::OpChecker c("linear");
  const Shape expected = detail::check_linear_inputs(c, x, weight, bias);
  c.defined({"out", out});
  c.same_dtype({"out", out}, {"x", x});
  c.same_device({{"out", out}, {"x", x}, {"weight", weight}, {"bias", bias}});
  c.shape({"out", out}, expected);
  c.no_overlap({"out", out}, {"x", x});
  c.no_overlap({"out", out}, {"weight", weight});
  c.no_overlap({"out", out}, {"bias", bias});
  if (out.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::linear(out, x, weight, bias));
  } else {
    detail::run_cpu_in_f32(cpu::linear, out, x, weight, bias);
  }
}

void linear_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x,
                     const Tensor& weight) {
  const detail::OpChecker c("linear_backward");
  const Shape out_shape = detail::check_linear_inputs(c, x, weight, Tensor());
  c.defined({"dout", dout});
  c.same_dtype({"dout", dout}, {"x", x});
  c.same_device({{"dout", dout}, {"x", x}, {"weight", weight}, {"dx", dx}, {"dweight", dweight}, {"dbias", dbias}});
  c.shape({"dout", dout}, out_shape);
  const detail::Arg grads[] = {{"dx", dx}, {"dweight", dweight}, {"dbias", dbias}};
  const Shape grad_shapes[] = {x.shape(), weight.shape(), {weight.size(0)}};
  for (int i = 0; i < 3; ++i) {
    if (!grads[i].tensor.defined()) continue;
    c.same_dtype(grads[i], {"x", x});
    c.shape(grads[i], grad_shapes[i]);
    c.no_overlap(grads[i], {"dout", dout});
    c.no_overlap(grads[i], {"x", x});
    c.no_overlap(grads[i], {"weight", weight});
    for (int j = 0; j < i; ++j) c.no_overlap(grads[i], grads[j]);
  }
  if (!dx.defined() && !dweight.defined() && !dbias.defined()) return;
  if (dout.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::linear_backward(dx, dweight, dbias, dout, x, weight));
  } else {
    detail::run_cpu_in_f32(cpu::linear_backward, dx, dweight, dbias, dout, x, weight);
  }
}

}  // namespace dtrain::ops
