// The clip coefficient on the device: one thread reads the squared global
// norm and writes clip_factor(norm, max_norm) / loss_scale, which AdamW then
// reads from device memory (AdamWConfig::device_grad_scale), so a clipped
// step needs no device-to-host copy. The same float operations as the CPU
// op (src/ops/cpu/clip_coefficient.cpp): IEEE sqrt and division.
#include "common.cuh"
#include "dtrain/ops.h"
#include "dtrain/optim/clip.h"

namespace dtrain::cuda {
namespace {

__global__ void clip_coefficient_kernel(float* out, const float* norm_squared, float max_norm, float loss_scale) {
  const float norm = __fdiv_rn(__fsqrt_rn(norm_squared[0]), loss_scale);
  const float clip = isfinite(norm) ? optim::clip_factor(norm, max_norm) : __int_as_float(0x7fc00000);
  out[0] = __fdiv_rn(clip, loss_scale);
}

}  // namespace

void clip_coefficient(Tensor& out, const Tensor& norm_squared, float max_norm, float loss_scale) {
  const OpContext ctx(out);
  clip_coefficient_kernel<<<1, 1, 0, ctx.stream()>>>(ptr<float>(out), ptr<float>(norm_squared), max_norm, loss_scale);
  DTRAIN_LAUNCH_CHECK();
}

}  // namespace dtrain::cuda
