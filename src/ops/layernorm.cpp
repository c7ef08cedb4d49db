// layernorm / layernorm_backward: validation and dispatch.
#include <cmath>

#include "ops/backends.h"
#include "ops/checks.h"
#include "ops/cpu_low_precision.h"

namespace dtrain::ops {
namespace {

// mean/rstd are per-row statistics: shape [rows] or x.shape()[:-1], f32.
void check_stats(const detail::OpChecker& c, const detail::Arg& s, const Tensor& x) {
  c.defined(s);
  c.dtype(s, DType::f32);
  Shape leading(x.shape().begin(), x.shape().end() - 1);
  const int64_t rows = shape_numel(leading);
  if (s.tensor.shape() != leading && s.tensor.shape() != Shape{rows}) {
    c.fail(detail::concat("argument '", s.name, "' has the wrong shape: expected ", shape_str(leading), " or [", rows,
                          "] (one value per row of 'x' ", shape_str(x.shape()), "), got ",
                          shape_str(s.tensor.shape())));
  }
}

void check_x_weight_bias(const detail::OpChecker& c, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  c.defined({"x", x});
  c.defined({"weight", weight});
  c.float_dtype({"x", x});
  c.min_dim({"x", x}, 1);
  c.same_dtype({"weight", weight}, {"x", x});
  c.shape({"weight", weight}, {x.size(-1)});
  if (bias.defined()) {
    c.same_dtype({"bias", bias}, {"x", x});
    c.shape({"bias", bias}, {x.size(-1)});
  }
}

}  // namespace

void layernorm(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight, const Tensor& bias,
               float eps) {
  const detail::OpChecker c("layernorm");
  check_x_weight_bias(c, x, weight, bias);
  c.defined({"out", out});
  c.same_dtype({"out", out}, {"x", x});
  c.shape({"out", out}, x.shape());
  check_stats(c, {"mean", mean}, x);
  check_stats(c, {"rstd", rstd}, x);
  c.same_device({{"out", out}, {"mean", mean}, {"rstd", rstd}, {"x", x}, {"weight", weight}, {"bias", bias}});
  if (!(eps >= 0.0f) || !std::isfinite(eps))
    c.fail(detail::concat("argument 'eps' must be finite and >= 0, got ", eps));
  c.no_overlap({"out", out}, {"x", x});
  c.no_overlap({"out", out}, {"weight", weight});
  c.no_overlap({"out", out}, {"bias", bias});
  c.no_overlap({"mean", mean}, {"rstd", rstd});
  for (const detail::Arg s : {detail::Arg{"mean", mean}, detail::Arg{"rstd", rstd}}) {
    c.no_overlap(s, {"out", out});
    c.no_overlap(s, {"x", x});
    c.no_overlap(s, {"weight", weight});
    c.no_overlap(s, {"bias", bias});
  }
  if (x.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::layernorm(out, mean, rstd, x, weight, bias, eps));
  } else {
    detail::run_cpu_in_f32(cpu::layernorm, out, mean, rstd, x, weight, bias, eps);
  }
}

void layernorm_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd) {
  const detail::OpChecker c("layernorm_backward");
  check_x_weight_bias(c, x, weight, Tensor());
  c.defined({"dout", dout});
  c.same_dtype({"dout", dout}, {"x", x});
  c.shape({"dout", dout}, x.shape());
  check_stats(c, {"mean", mean}, x);
  check_stats(c, {"rstd", rstd}, x);
  c.same_device({{"dout", dout},
                 {"x", x},
                 {"weight", weight},
                 {"mean", mean},
                 {"rstd", rstd},
                 {"dx", dx},
                 {"dweight", dweight},
                 {"dbias", dbias}});
  const detail::Arg grads[] = {{"dx", dx}, {"dweight", dweight}, {"dbias", dbias}};
  const Shape grad_shapes[] = {x.shape(), weight.shape(), weight.shape()};
  for (int i = 0; i < 3; ++i) {
    if (!grads[i].tensor.defined()) continue;
    c.same_dtype(grads[i], {"x", x});
    c.shape(grads[i], grad_shapes[i]);
    for (const detail::Arg in : {detail::Arg{"dout", dout}, detail::Arg{"x", x}, detail::Arg{"weight", weight},
                                 detail::Arg{"mean", mean}, detail::Arg{"rstd", rstd}}) {
      c.no_overlap(grads[i], in);
    }
    for (int j = 0; j < i; ++j) c.no_overlap(grads[i], grads[j]);
  }
  if (!dx.defined() && !dweight.defined() && !dbias.defined()) return;
  if (x.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::layernorm_backward(dx, dweight, dbias, dout, x, weight, mean, rstd));
  } else {
    detail::run_cpu_in_f32(cpu::layernorm_backward, dx, dweight, dbias, dout, x, weight, mean, rstd);
  }
}

}  // namespace dtrain::ops
