// layernorm / layernorm_backward: validation and dispatch.
#include <cmath>

#include "ops/backends.h"
#include "ops/checks.h"
#include "ops/cpu_low_precision.h"
#include "ops/layernorm_checks.h"

namespace dtrain::ops {
namespace detail {

void check_layernorm_stats(const OpChecker& c, const Arg& s, const Arg& x) {
  c.defined(s);
  c.dtype(s, DType::f32);
  Shape leading(x.tensor.shape().begin(), x.tensor.shape().end() - 1);
  const int64_t rows = shape_numel(leading);
  if (s.tensor.shape() != leading && s.tensor.shape() != Shape{rows}) {
    c.fail(concat("argument '", s.name, "' has the wrong shape: expected ", shape_str(leading), " or [", rows,
                  "] (one value per row of '", x.name, "' ", shape_str(x.tensor.shape()), "), got ",
                  shape_str(s.tensor.shape())));
  }
}

void check_layernorm_x_weight_bias(const OpChecker& c, const Arg& x, const Tensor& weight, const Tensor& bias) {
  c.defined(x);
  c.defined({"weight", weight});
  c.float_dtype(x);
  c.min_dim(x, 1);
  c.same_dtype({"weight", weight}, x);
  c.shape({"weight", weight}, {x.tensor.size(-1)});
  if (bias.defined()) {
    c.same_dtype({"bias", bias}, x);
    c.shape({"bias", bias}, {x.tensor.size(-1)});
  }
}

}  // namespace detail

void layernorm(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight, const Tensor& bias,
               float eps) {
  const detail::OpChecker c("layernorm");
  detail::check_layernorm_x_weight_bias(c, {"x", x}, weight, bias);
  c.defined({"out", out});
  c.same_dtype({"out", out}, {"x", x});
  c.shape({"out", out}, x.shape());
  detail::check_layernorm_stats(c, {"mean", mean}, {"x", x});
  detail::check_layernorm_stats(c, {"rstd", rstd}, {"x", x});
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
  detail::check_layernorm_x_weight_bias(c, {"x", x}, weight, Tensor());
  c.defined({"dout", dout});
  c.same_dtype({"dout", dout}, {"x", x});
  c.shape({"dout", dout}, x.shape());
  detail::check_layernorm_stats(c, {"mean", mean}, {"x", x});
  detail::check_layernorm_stats(c, {"rstd", rstd}, {"x", x});
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
