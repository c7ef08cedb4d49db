// linear / linear_backward: validation and dispatch.
#include "ops/backends.h"
#include "ops/checks.h"
#include "ops/cpu_low_precision.h"

namespace dtrain::ops {
namespace {

// Checks x [..., IC], weight [OC, IC], bias [OC] (optional); returns the shape of out.
Shape check_linear_inputs(const detail::OpChecker& c, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  c.defined({"x", x});
  c.defined({"weight", weight});
  c.float_dtype({"x", x});
  c.same_dtype({"weight", weight}, {"x", x});
  c.min_dim({"x", x}, 1);
  c.dim({"weight", weight}, 2);
  const int64_t ic = x.size(-1);
  const int64_t oc = weight.size(0);
  if (weight.size(1) != ic) {
    c.fail(detail::concat("argument 'weight' has the wrong shape: expected [OC, ", ic, "] (IC from 'x' ",
                          shape_str(x.shape()), "), got ", shape_str(weight.shape())));
  }
  if (bias.defined()) {
    c.same_dtype({"bias", bias}, {"x", x});
    c.shape({"bias", bias}, {oc});
  }
  Shape out = x.shape();
  out.back() = oc;
  return out;
}

}  // namespace

void linear(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const detail::OpChecker c("linear");
  const Shape expected = check_linear_inputs(c, x, weight, bias);
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
  const Shape out_shape = check_linear_inputs(c, x, weight, Tensor());
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
