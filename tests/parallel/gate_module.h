// Gate: a test module with one parameter and no compute, shared by the
// engine's workers (dp_worker.cpp, mixed_worker.cpp). Its parameter gets a
// gradient only when `skip` is false (a branch not taken); the "gradient" is
// a constant, so any dtype works on the CPU and the allocator holds nothing
// but the engine's and the optimizer's state.
#pragma once

#include <cstdint>

#include "dtrain/nn/module.h"

namespace dtrain::testing {

class Gate : public nn::Module {
 public:
  explicit Gate(DType dtype = DType::f32, int64_t n = 8)
      : Module("Gate"), w(add_parameter("w", Tensor::zeros({n}, dtype), false)) {}
  void forward() {
    run_hooks(nn::HookPoint::pre_forward);
    run_hooks(nn::HookPoint::post_forward);
  }
  void backward(bool skip, double value = 1.0) {
    run_hooks(nn::HookPoint::pre_backward);
    if (!skip) {
      w.require_grad().fill_(value);
      grad_ready(w);
    }
    run_hooks(nn::HookPoint::post_backward);
  }
  nn::Parameter& w;
};

}  // namespace dtrain::testing
