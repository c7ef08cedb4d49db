// CPU add_layernorm (f32): residual = a + b, then the layernorm of that row
// while it is still in L1, one row at a time. The normalisation is
// layernorm_row (layernorm_row.h), the very code of cpu::layernorm, so the
// fused op equals add followed by layernorm bit for bit. bf16/f16 calls do
// not reach this kernel: src/ops/add_layernorm.cpp runs add and layernorm
// separately for them so the residual is rounded before it is normalised.
#include "ops/backends.h"
#include "ops/cpu/layernorm_row.h"
#include "ops/cpu/parallel.h"

namespace dtrain::cpu {

void add_layernorm(Tensor& residual, Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& a, const Tensor& b,
                   const Tensor& weight, const Tensor& bias, float eps) {
  const int64_t ch = a.size(-1);
  const int64_t rows = ch > 0 ? a.numel() / ch : mean.numel();
  const float* pa = a.data<float>();
  const float* pbb = b.data<float>();
  const float* pw = weight.data<float>();
  const float* pbias = bias.defined() ? bias.data<float>() : nullptr;
  float* pres = residual.data<float>();
  float* po = out.data<float>();
  float* pm = mean.data<float>();
  float* pr = rstd.data<float>();
#pragma omp parallel for schedule(static) if (rows * ch > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const float* ar = pa + r * ch;
    const float* br = pbb + r * ch;
    float* res = pres + r * ch;
#pragma omp simd
    for (int64_t i = 0; i < ch; ++i) res[i] = ar[i] + br[i];  // exact aliasing of a or b is safe
    layernorm_row(res, po + r * ch, pw, pbias, ch, eps, pm[r], pr[r]);
  }
}

}  // namespace dtrain::cpu
