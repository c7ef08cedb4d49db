// AdamW (decoupled weight decay) over parameter groups; one ops::adamw_step
// call per distinct learning-rate scale, so one launch on CUDA in the usual case.
#pragma once

#include "dtrain/optim/optimizer.h"

namespace dtrain::optim {

struct AdamWOptions {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
};

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<ParamGroup> groups, AdamWOptions options = {});
  void step(float lr, float grad_scale = 1.0f) override;
  // The multiplier is read by the update kernel itself (AdamWConfig::device_grad_scale).
  void step_scaled_by(float lr, const Tensor& device_grad_scale) override;
  bool reads_scale_on_device() const override { return true; }
  std::vector<std::pair<std::string, Tensor>> state() override;
  void init_state() override;
  const AdamWOptions& options() const { return options_; }

 private:
  void update(float lr, float grad_scale, const Tensor& device_grad_scale);

  AdamWOptions options_;
  // Per group, per param: first and second moments.
  std::vector<std::vector<std::pair<Tensor, Tensor>>> moments_;
};

}  // namespace dtrain::optim
