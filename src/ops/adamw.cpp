// adamw_step: validation and dispatch.
#include <cmath>
#include <string>

#include "ops/backends.h"
#include "ops/checks.h"
#include "ops/cpu_low_precision.h"

namespace dtrain::ops {

void adamw_step(std::vector<AdamWTensor>& tensors, const AdamWConfig& config) {
  const detail::OpChecker c("adamw_step");
  c.finite("lr", config.lr);
  c.finite("grad_scale", config.grad_scale);
  if (!(config.beta1 >= 0.0f && config.beta1 < 1.0f))
    c.fail(detail::concat("'beta1' must be in [0, 1), got ", config.beta1));
  if (!(config.beta2 >= 0.0f && config.beta2 < 1.0f))
    c.fail(detail::concat("'beta2' must be in [0, 1), got ", config.beta2));
  if (!(config.eps >= 0.0f) || !std::isfinite(config.eps))
    c.fail(detail::concat("'eps' must be finite and >= 0, got ", config.eps));
  if (config.step < 1) c.fail(detail::concat("'step' is 1-based: expected >= 1, got ", config.step));
  if (tensors.empty()) return;
  const Device device = tensors[0].param.defined() ? tensors[0].param.device() : Device::cpu();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const AdamWTensor& t = tensors[i];
    const std::string idx = "tensors[" + std::to_string(i) + "].";
    const std::string np = idx + "param", ng = idx + "grad", nm = idx + "exp_avg", nv = idx + "exp_avg_sq",
                      nc = idx + "param_copy";
    const detail::Arg p{np.c_str(), t.param}, g{ng.c_str(), t.grad}, m{nm.c_str(), t.exp_avg},
        v{nv.c_str(), t.exp_avg_sq}, pc{nc.c_str(), t.param_copy};
    for (const detail::Arg& a : {p, g, m, v}) c.defined(a);
    c.dtype(p, DType::f32);
    if (t.grad.dtype() != DType::f32 && t.grad.dtype() != DType::bf16 && t.grad.dtype() != DType::f16) {
      c.fail(detail::concat("argument '", ng, "' has the wrong dtype: expected f32, bf16 or f16, got ",
                            dtype_name(t.grad.dtype())));
    }
    c.dtype(m, DType::f32);
    c.dtype(v, DType::f32);
    if (t.param.device() != device) {
      c.fail(detail::concat("argument '", np, "' is on the wrong device: expected ", device.str(),
                            " (the device of tensors[0].param), got ", t.param.device().str()));
    }
    c.same_device({p, g, m, v, pc});
    for (const detail::Arg& a : {g, m, v}) c.shape(a, t.param.shape());
    if (t.param_copy.defined()) {
      c.dtype(pc, DType::bf16);
      c.shape(pc, t.param.shape());
    }
    c.finite((idx + "weight_decay").c_str(), t.weight_decay);
    if (i == 0 && config.device_grad_scale.defined()) {
      const detail::Arg ds{"device_grad_scale", config.device_grad_scale};
      c.dtype(ds, DType::f32);
      c.shape(ds, {1});
      c.same_device({p, ds});
    }
    const detail::Arg all[] = {p, g, m, v, pc};
    for (int a = 0; a < 5; ++a) {
      for (int b = 0; b < a; ++b) c.no_overlap(all[a], all[b]);
    }
  }
  if (device.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::adamw_step(tensors, config));
  } else {
    detail::run_cpu_in_f32(cpu::adamw_step, tensors, config);
  }
}

}  // namespace dtrain::ops
