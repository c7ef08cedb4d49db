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
  const Tensor& h = fc.forward(x);
  ensure(gelu_, h.shape());
  ops::gelu(gelu_, h);
  const Tensor& out = proj.forward(gelu_);
  run_hooks(HookPoint::post_forward);
  return out;
}

void MLP::backward(const Tensor& dout, Tensor& dx) {
  run_hooks(HookPoint::pre_backward);
  ensure_zeroed(dgelu_, gelu_.shape());
  proj.backward(dout, dgelu_);
  ensure_zeroed(dfc_, gelu_.shape());
  ops::gelu_backward(dfc_, dgelu_, fc.output());
  fc.backward(dfc_, dx);
  run_hooks(HookPoint::post_backward);
}

void MLP::release_activations() {
  Module::release_activations();
  gelu_ = Tensor();
  dgelu_ = Tensor();
  dfc_ = Tensor();
}

}  // namespace dtrain::nn
