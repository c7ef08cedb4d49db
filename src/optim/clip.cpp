#include "dtrain/optim/clip.h"

#include <cmath>

#include "dtrain/ops.h"

namespace dtrain::optim {

float grad_norm_squared(const std::vector<Tensor>& grads) {
  if (grads.empty()) return 0.0f;
  Tensor out = Tensor::empty({1}, DType::f32, grads.front().device());
  ops::global_norm_squared(out, grads);
  return static_cast<float>(out.to(Device::cpu()).item(0));
}

float grad_norm(const std::vector<Tensor>& grads) {
  return std::sqrt(grad_norm_squared(grads));
}

float clip_scale(float norm, float max_norm) {
  DTRAIN_CHECK(std::isfinite(norm), "gradient norm is ", norm,
               " (not finite): the loss diverged; lower the learning rate or check the data");
  return clip_factor(norm, max_norm);
}

float clip_grad_norm(std::vector<Tensor> grads, float max_norm) {
  const float norm = grad_norm(grads);
  const float s = clip_scale(norm, max_norm);
  if (s != 1.0f) {
    for (auto& g : grads) ops::scale(g, g, s);
  }
  return norm;
}

}  // namespace dtrain::optim
