// global_norm_squared / global_norm: validation and dispatch.
#include <cmath>
#include <string>

#include "ops/backends.h"
#include "ops/checks.h"
#include "ops/cpu_low_precision.h"

namespace dtrain::ops {

void global_norm_squared(Tensor& out, const std::vector<Tensor>& tensors) {
  const detail::OpChecker c("global_norm_squared");
  c.defined({"out", out});
  c.dtype({"out", out}, DType::f32);
  c.shape({"out", out}, {1});
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string name = "tensors[" + std::to_string(i) + "]";
    const detail::Arg a{name.c_str(), tensors[i]};
    c.defined(a);
    if (tensors[i].dtype() != DType::f32 && tensors[i].dtype() != DType::bf16 && tensors[i].dtype() != DType::f16) {
      c.fail(detail::concat("argument '", name, "' has the wrong dtype: expected f32, bf16 or f16, got ",
                            dtype_name(tensors[i].dtype())));
    }
    c.same_device({{"out", out}, a});
    c.no_overlap({"out", out}, a);
  }
  if (out.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::global_norm_squared(out, tensors));
  } else {
    detail::run_cpu_in_f32(cpu::global_norm_squared, out, tensors);
  }
}

float global_norm(const std::vector<Tensor>& tensors) {
  const Device device = !tensors.empty() && tensors[0].defined() ? tensors[0].device() : Device::cpu();
  Tensor out = Tensor::empty({1}, DType::f32, device);
  global_norm_squared(out, tensors);
  const Tensor host = out.to(Device::cpu());
  return std::sqrt(host.data<float>()[0]);
}

}  // namespace dtrain::ops
