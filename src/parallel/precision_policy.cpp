#include "parallel/precision_policy.h"

#include <cmath>

#include "dtrain/ops.h"

namespace dtrain::parallel::detail {

PrecisionPolicy::PrecisionPolicy(Precision precision, float initial_loss_scale, int loss_scale_window)
    : precision_(precision), dtype_(precision_dtype(precision)) {
  if (precision == Precision::f16) {
    LossScalerConfig sc;
    sc.init_scale = initial_loss_scale;
    sc.growth_interval = loss_scale_window;
    scaler_.emplace(sc);
  }
}

bool PrecisionPolicy::accept_step(float scaled_norm) {
  return !scaler_ || scaler_->update(std::isfinite(scaled_norm));
}

void PrecisionPolicy::to_f32(Tensor& out, const Tensor& values) const {
  if (values.dtype() == DType::f32) {
    out.copy_(values);
  } else {
    ops::cast(out, values);
  }
}

void PrecisionPolicy::from_master(Tensor& out, const Tensor& master) const {
  ops::cast(out, master);
}

}  // namespace dtrain::parallel::detail
