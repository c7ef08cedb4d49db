// clip_coefficient: validation and dispatch. The clipped, loss-scale-undone
// gradient multiplier computed where the norm is, so an optimizer step with
// clipping needs no device-to-host read (see include/dtrain/ops.h).
#include "ops/backends.h"
#include "ops/checks.h"

namespace dtrain::ops {

void clip_coefficient(Tensor& out, const Tensor& norm_squared, float max_norm, float loss_scale) {
  const detail::OpChecker c("clip_coefficient");
  const detail::Arg o{"out", out}, sq{"norm_squared", norm_squared};
  c.defined(o);
  c.defined(sq);
  c.dtype(o, DType::f32);
  c.dtype(sq, DType::f32);
  c.shape(o, {1});
  c.shape(sq, {1});
  c.same_device({o, sq});
  c.finite("max_norm", max_norm);
  c.finite("loss_scale", loss_scale);
  if (!(loss_scale > 0.0f)) c.fail(detail::concat("'loss_scale' must be positive, got ", loss_scale));
  if (out.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::clip_coefficient(out, norm_squared, max_norm, loss_scale));
  } else {
    cpu::clip_coefficient(out, norm_squared, max_norm, loss_scale);
  }
}

}  // namespace dtrain::ops
