// add_layernorm: validation and dispatch. The residual add of a transformer
// block fused with the layernorm that reads the sum next, saving a read of the
// residual stream (include/dtrain/ops.h).
#include <cmath>

#include "ops/backends.h"
#include "ops/checks.h"
#include "ops/cpu_low_precision.h"
#include "ops/layernorm_checks.h"

namespace dtrain::ops {

void add_layernorm(Tensor& residual, Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& a, const Tensor& b,
                   const Tensor& weight, const Tensor& bias, float eps) {
  const detail::OpChecker c("add_layernorm");
  detail::check_layernorm_x_weight_bias(c, {"a", a}, weight, bias);
  c.defined({"b", b});
  c.same_dtype({"b", b}, {"a", a});
  c.shape({"b", b}, a.shape());
  for (const detail::Arg o : {detail::Arg{"residual", residual}, detail::Arg{"out", out}}) {
    c.defined(o);
    c.same_dtype(o, {"a", a});
    c.shape(o, a.shape());
  }
  detail::check_layernorm_stats(c, {"mean", mean}, {"a", a});
  detail::check_layernorm_stats(c, {"rstd", rstd}, {"a", a});
  c.same_device({{"residual", residual},
                 {"out", out},
                 {"mean", mean},
                 {"rstd", rstd},
                 {"a", a},
                 {"b", b},
                 {"weight", weight},
                 {"bias", bias}});
  if (!(eps >= 0.0f) || !std::isfinite(eps))
    c.fail(detail::concat("argument 'eps' must be finite and >= 0, got ", eps));
  // residual: in place over a or b is fine (each element is read before it is written).
  c.same_or_disjoint({"residual", residual}, {"a", a});
  c.same_or_disjoint({"residual", residual}, {"b", b});
  c.no_overlap({"residual", residual}, {"weight", weight});
  c.no_overlap({"residual", residual}, {"bias", bias});
  const detail::Arg outputs[] = {{"out", out}, {"mean", mean}, {"rstd", rstd}};
  for (int i = 0; i < 3; ++i) {
    for (const detail::Arg in : {detail::Arg{"residual", residual}, detail::Arg{"a", a}, detail::Arg{"b", b},
                                 detail::Arg{"weight", weight}, detail::Arg{"bias", bias}}) {
      c.no_overlap(outputs[i], in);
    }
    for (int j = 0; j < i; ++j) c.no_overlap(outputs[i], outputs[j]);
  }
  if (a.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::add_layernorm(residual, out, mean, rstd, a, b, weight, bias, eps));
  } else if (detail::is_low_precision(a.dtype())) {
    // Two steps, so the residual is rounded to its dtype before it is
    // normalised: the same values as add then layernorm, and as the CUDA kernel.
    detail::run_cpu_in_f32(cpu::add, residual, a, b);
    detail::run_cpu_in_f32(cpu::layernorm, out, mean, rstd, residual, weight, bias, eps);
  } else {
    cpu::add_layernorm(residual, out, mean, rstd, a, b, weight, bias, eps);
  }
}

}  // namespace dtrain::ops
