#include "dtrain/nn/layers.h"
#include "dtrain/ops.h"

namespace dtrain::nn {

LayerNorm::LayerNorm(int64_t channels, Device device, float eps) : LayerNorm(channels, device, DType::f32, eps) {}

LayerNorm::LayerNorm(int64_t channels, Device device, DType dtype, float eps)
    : Module("LayerNorm", device, dtype),
      weight(create_parameter("weight", {channels}, ParamInit::ones, false)),
      bias(create_parameter("bias", {channels}, ParamInit::zeros, false)),
      channels_(channels),
      eps_(eps) {
  DTRAIN_CHECK(channels > 0, "LayerNorm(", channels, "): channels must be positive");
}

const Tensor& LayerNorm::forward(const Tensor& x) {
  run_hooks(HookPoint::pre_forward);
  DTRAIN_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == channels_, "LayerNorm: input ", x.describe(),
               " must end in ", channels_, " channels");
  x_ = x;
  const int64_t rows = x.numel() / channels_;
  ensure(out_buf_, x.shape());
  ensure(mean_, {rows}, DType::f32);
  ensure(rstd_, {rows}, DType::f32);
  ops::layernorm(out_buf_, mean_, rstd_, x, weight.require_value(), bias.require_value(), eps_);
  run_hooks(HookPoint::post_forward);
  return out_buf_;
}

void LayerNorm::backward(const Tensor& dout, Tensor& dx) {
  run_hooks(HookPoint::pre_backward);
  DTRAIN_CHECK(x_.defined(), "LayerNorm::backward called before forward (or after release_activations)");
  ops::layernorm_backward(dx, weight.require_grad(), bias.require_grad(), dout, x_, weight.require_value(), mean_,
                          rstd_);
  grad_ready(weight);
  grad_ready(bias);
  run_hooks(HookPoint::post_backward);
}

void LayerNorm::release_activations() {
  x_ = Tensor();
  out_buf_ = Tensor();
  mean_ = Tensor();
  rstd_ = Tensor();
}

}  // namespace dtrain::nn
