// PrecisionPolicy: what the engine's precision setting means for tensors.
// f32: parameters, gradients and master weights are one f32 storage. bf16 /
// f16: the model computes in the low dtype; this rank's master weights are
// f32, gradient reductions run in f32, and updated masters are rounded back
// to the compute dtype (where the reduced gradient lives is ShardedState's
// business). f16 adds dynamic loss scaling: the overflow decision comes from
// the global gradient norm, which every rank computes identically, so all
// ranks skip or step together.
#pragma once

#include <optional>

#include "dtrain/optim/loss_scaler.h"
#include "dtrain/parallel/memory_ledger.h"
#include "dtrain/tensor.h"

namespace dtrain::parallel::detail {

class PrecisionPolicy {
 public:
  PrecisionPolicy(Precision precision, float initial_loss_scale, int loss_scale_window);

  Precision precision() const { return precision_; }
  DType compute_dtype() const { return dtype_; }
  bool mixed() const { return precision_ != Precision::f32; }
  float loss_scale() const { return scaler_ ? scaler_->scale() : 1.0f; }
  bool scales_loss() const { return scaler_.has_value(); }  // f16: dynamic loss scaling

  // The f16 scaler (null for f32 and bf16).
  const DynamicLossScaler* scaler() const { return scaler_ ? &*scaler_ : nullptr; }
  DynamicLossScaler* scaler() { return scaler_ ? &*scaler_ : nullptr; }

  // Records one step's scaled gradient norm; false: an f16 overflow, skip the
  // update (the scale backs off). Always true without loss scaling.
  bool accept_step(float scaled_norm);

  // out (f32) <- compute-dtype values, exactly (cast, or copy in f32): a
  // master from parameters, or a gradient widened for an f32 reduction.
  void to_f32(Tensor& out, const Tensor& values) const;
  // out (compute dtype) <- master, rounded.
  void from_master(Tensor& out, const Tensor& master) const;

 private:
  Precision precision_;
  DType dtype_;
  std::optional<DynamicLossScaler> scaler_;
};

}  // namespace dtrain::parallel::detail
