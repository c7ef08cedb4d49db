// nn::LayerNorm: the layernorm op with its gain and bias, optionally fused
// with the residual add before it (forward_residual) and optionally
// recomputing its output in backward instead of keeping it (set_recompute).
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

Tensor& LayerNorm::output_buffer(const Shape& shape) {
  if (shared_output_ == nullptr) return ensure(out_buf_, shape);
  // Reuses the shared storage while the shape stays (the consumers' handles point at it).
  out_buf_ = ensure(*shared_output_, shape);
  return out_buf_;
}

const Tensor& LayerNorm::forward(const Tensor& x) {
  run_hooks(HookPoint::pre_forward);
  DTRAIN_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == channels_, "LayerNorm: input ", x.describe(),
               " must end in ", channels_, " channels");
  x_ = x;
  const int64_t rows = x.numel() / channels_;
  Tensor& out = output_buffer(x.shape());
  ensure(mean_, {rows}, DType::f32);
  ensure(rstd_, {rows}, DType::f32);
  ops::layernorm(out, mean_, rstd_, x, weight.require_value(), bias.require_value(), eps_);
  run_hooks(HookPoint::post_forward);
  return out_buf_;
}

const Tensor& LayerNorm::forward_residual(const Tensor& a, const Tensor& b) {
  run_hooks(HookPoint::pre_forward);
  DTRAIN_CHECK(a.defined() && a.dim() >= 1 && a.size(-1) == channels_, "LayerNorm: input ", a.describe(),
               " must end in ", channels_, " channels");
  DTRAIN_CHECK(b.defined() && b.shape() == a.shape(), "LayerNorm::forward_residual: the summands ", a.describe(),
               " and ", (b.defined() ? b.describe() : std::string("(undefined)")), " must have the same shape");
  const int64_t rows = a.numel() / channels_;
  ensure(residual_, a.shape());
  Tensor& out = output_buffer(a.shape());
  ensure(mean_, {rows}, DType::f32);
  ensure(rstd_, {rows}, DType::f32);
  ops::add_layernorm(residual_, out, mean_, rstd_, a, b, weight.require_value(), bias.require_value(), eps_);
  x_ = residual_;
  run_hooks(HookPoint::post_forward);
  return out_buf_;
}

void LayerNorm::set_recompute(std::shared_ptr<Tensor> shared_output) {
  shared_output_ = std::move(shared_output);
  out_buf_ = Tensor();  // the next forward writes where the mode says
}

void LayerNorm::recompute_output() {
  DTRAIN_CHECK(recompute(), "LayerNorm::recompute_output: recompute is off (set_recompute)");
  DTRAIN_CHECK(x_.defined(), "LayerNorm::recompute_output called before forward (or after release_activations)");
  DTRAIN_CHECK(out_buf_.defined() && out_buf_.shares_storage(*shared_output_) && out_buf_.shape() == x_.shape(),
               "LayerNorm::recompute_output: the shared output buffer was reallocated since this layer's forward "
               "(another layer sharing it ran with a different shape); its consumers would read stale memory");
  run_hooks(HookPoint::pre_forward);
  // The same op on the same input: the same output, mean and rstd, bit for bit.
  ops::layernorm(out_buf_, mean_, rstd_, x_, weight.require_value(), bias.require_value(), eps_);
  run_hooks(HookPoint::post_forward);
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
  residual_ = Tensor();
  out_buf_ = Tensor();  // a shared output buffer stays with its other users
  mean_ = Tensor();
  rstd_ = Tensor();
}

}  // namespace dtrain::nn
