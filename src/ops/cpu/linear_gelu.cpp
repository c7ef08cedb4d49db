// CPU linear_gelu: the linear and gelu kernels one after the other (a CPU
// GEMM gains nothing from fusing a pass that is memory bound next to it).
#include "ops/backends.h"
#include "ops/fused_epilogue.h"

namespace dtrain::cpu {

void linear_gelu(Tensor& out, Tensor& pre, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  linear(pre, x, weight, bias);
  gelu(out, pre);
  ops::detail::count_fused_epilogue(false);
}

}  // namespace dtrain::cpu
