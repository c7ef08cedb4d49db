// MLP: fc -> GELU -> proj with the GELU fused into fc's GEMM (forward) and
// into the GEMM of proj's input gradient (backward), and the optional GELU
// recompute (GPTConfig::recompute >= 1). See layers.h.
#include "dtrain/nn/layers.h"
#include "dtrain/ops.h"

namespace dtrain::nn {

MLP::MLP(int64_t channels, int64_t hidden, Device device, DType dtype)
    : Module("MLP", device, dtype),
      fc(channels, hidden, true, device, dtype),
      proj(hidden, channels, true, device, dtype) {
  add_module("fc", fc);
  add_module("proj", proj);
}

const Tensor& MLP::forward(const Tensor& x) {
  run_hooks(HookPoint::pre_forward);
  ensure(gelu_, with_last_dim(x.shape(), fc.out_features()));
  fc.forward_gelu(x, gelu_);
  const Tensor& out = proj.forward(gelu_);
  if (recompute_gelu_) drop_gelu();  // backward rebuilds it from fc.output()
  run_hooks(HookPoint::post_forward);
  return out;
}

void MLP::backward(const Tensor& dout, Tensor& dx) {
  run_hooks(HookPoint::pre_backward);
  const Tensor& pre = fc.output();
  if (recompute_gelu_) {
    ensure(gelu_, pre.shape());
    ops::gelu(gelu_, pre);
    proj.replace_input(gelu_);
  }
  ensure(dpre_, pre.shape());
  ensure_zeroed(dfc_bias_, {fc.out_features()});
  proj.backward_through_gelu(dout, dpre_, dfc_bias_, pre);
  if (recompute_gelu_) drop_gelu();
  fc.backward_with_bias_grad(dpre_, dx, dfc_bias_);
  if (recompute_gelu_) dpre_ = Tensor();  // no hidden-width buffer but fc's output outlives this call
  run_hooks(HookPoint::post_backward);
}

void MLP::drop_gelu() {
  proj.replace_input(Tensor());
  gelu_ = Tensor();
}

void MLP::release_activations() {
  Module::release_activations();
  gelu_ = Tensor();
  dpre_ = Tensor();
  dfc_bias_ = Tensor();
}

}  // namespace dtrain::nn
