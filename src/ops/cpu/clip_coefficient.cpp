// CPU clip coefficient: the same float operations as the CUDA kernel
// (kernels/clip_coefficient.cu) and as the engine's host path (sqrt of the
// f32 sum, / loss scale, optim::clip_factor, / loss scale), so all three
// give the same bits.
#include <cmath>
#include <limits>

#include "dtrain/optim/clip.h"
#include "ops/backends.h"

namespace dtrain::cpu {

void clip_coefficient(Tensor& out, const Tensor& norm_squared, float max_norm, float loss_scale) {
  const float norm = std::sqrt(norm_squared.data<float>()[0]) / loss_scale;
  const float clip = std::isfinite(norm) ? optim::clip_factor(norm, max_norm) : std::numeric_limits<float>::quiet_NaN();
  out.data<float>()[0] = clip / loss_scale;
}

}  // namespace dtrain::cpu
