// linear_gelu: validation and dispatch (the MLP's fc layer with its GELU).
#include "ops/backends.h"
#include "ops/checks.h"
#include "ops/cpu_low_precision.h"
#include "ops/fused_epilogue.h"
#include "ops/linear_checks.h"

namespace dtrain::ops {

void linear_gelu(Tensor& out, Tensor& pre, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const detail::OpChecker c("linear_gelu");
  const Shape expected = detail::check_linear_inputs(c, x, weight, bias);
  const detail::Arg outputs[] = {{"out", out}, {"pre", pre}};
  for (const detail::Arg& o : outputs) {
    c.defined(o);
    c.same_dtype(o, {"x", x});
    c.shape(o, expected);
    c.no_overlap(o, {"x", x});
    c.no_overlap(o, {"weight", weight});
    c.no_overlap(o, {"bias", bias});
  }
  c.no_overlap({"out", out}, {"pre", pre});
  c.same_device({{"out", out}, {"pre", pre}, {"x", x}, {"weight", weight}, {"bias", bias}});
  if (out.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::linear_gelu(out, pre, x, weight, bias));
  } else if (detail::is_low_precision(x.dtype())) {
    // GELU of pre as stored (rounded to bf16/f16), not of its f32 value, so
    // that a recompute from pre (GPTConfig::recompute) gives the same bits.
    detail::run_cpu_in_f32(cpu::linear, pre, x, weight, bias);
    detail::run_cpu_in_f32(cpu::gelu, out, pre);
    detail::count_fused_epilogue(false);
  } else {
    cpu::linear_gelu(out, pre, x, weight, bias);
  }
}

}  // namespace dtrain::ops
