#include "dtrain/nn/layers.h"
#include "dtrain/ops.h"

namespace dtrain::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Device device, DType dtype)
    : Module("Linear", device, dtype),
      weight(create_parameter("weight", {out_features, in_features}, ParamInit::zeros, true)),
      bias(bias ? &create_parameter("bias", {out_features}, ParamInit::zeros, false) : nullptr),
      in_(in_features),
      out_(out_features) {
  DTRAIN_CHECK(in_features > 0 && out_features > 0, "Linear(", in_features, ", ", out_features,
               "): sizes must be positive");
}

const Tensor& Linear::forward(const Tensor& x) {
  run_hooks(HookPoint::pre_forward);
  keep_input(x);
  ops::linear(out_buf_, x, weight.require_value(), bias ? bias->require_value() : Tensor());
  run_hooks(HookPoint::post_forward);
  return out_buf_;
}

void Linear::backward(const Tensor& dout, Tensor& dx) {
  run_hooks(HookPoint::pre_backward);
  DTRAIN_CHECK(x_.defined(), "Linear::backward called before forward (or after release_activations)");
  Tensor no_bias;
  ops::linear_backward(dx, weight.require_grad(), bias ? bias->require_grad() : no_bias, dout, x_,
                       weight.require_value());
  grad_ready(weight);
  if (bias) grad_ready(*bias);
  run_hooks(HookPoint::post_backward);
}

void Linear::keep_input(const Tensor& x) {
  DTRAIN_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == in_, "Linear: input ", x.describe(), " must end in ", in_,
               " features");
  x_ = x;
  ensure(out_buf_, with_last_dim(x.shape(), out_));
}

void Linear::forward_gelu(const Tensor& x, Tensor& gelu_out) {
  run_hooks(HookPoint::pre_forward);
  keep_input(x);
  ops::linear_gelu(gelu_out, out_buf_, x, weight.require_value(), bias ? bias->require_value() : Tensor());
  run_hooks(HookPoint::post_forward);
}

void Linear::backward_through_gelu(const Tensor& dout, Tensor& dpre, Tensor& dbias_pre, const Tensor& pre) {
  run_hooks(HookPoint::pre_backward);
  DTRAIN_CHECK(x_.defined(), "Linear::backward_through_gelu called before forward (or after release_activations)");
  Tensor no_dx, no_bias;
  const Tensor& w = weight.require_value();
  ops::linear_backward(no_dx, weight.require_grad(), bias ? bias->require_grad() : no_bias, dout, x_, w);
  ops::matmul_dgelu_bgrad(dpre, dbias_pre, dout, w, pre);
  grad_ready(weight);
  if (bias) grad_ready(*bias);
  run_hooks(HookPoint::post_backward);
}

void Linear::backward_with_bias_grad(const Tensor& dout, Tensor& dx, const Tensor& dbias) {
  run_hooks(HookPoint::pre_backward);
  DTRAIN_CHECK(x_.defined(), "Linear::backward_with_bias_grad called before forward (or after release_activations)");
  DTRAIN_CHECK(bias != nullptr || !dbias.defined(), "Linear::backward_with_bias_grad: a bias gradient for a layer ",
               "without bias");
  Tensor no_bias;
  ops::linear_backward(dx, weight.require_grad(), no_bias, dout, x_, weight.require_value());
  if (bias) ops::add_(bias->require_grad(), dbias, 1.0f);
  grad_ready(weight);
  if (bias) grad_ready(*bias);
  run_hooks(HookPoint::post_backward);
}

void Linear::replace_input(const Tensor& x) {
  DTRAIN_CHECK(!x.defined() || (x.dim() >= 1 && x.size(-1) == in_), "Linear::replace_input: ", x.describe(),
               " must end in ", in_, " features");
  x_ = x;
}

void Linear::release_activations() {
  x_ = Tensor();
  out_buf_ = Tensor();
}

}  // namespace dtrain::nn
