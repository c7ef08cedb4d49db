// CPU layernorm: one pass per row for the statistics (two-pass variance, for
// accuracy), one for the output (layernorm_row.h, shared with add_layernorm).
// Backward follows the usual decomposition
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dout * weight,
// and sums dweight/dbias into per-thread partials that are added at the end
// (no atomics; deterministic for a given thread count).
#include <cmath>
#include <vector>

#include "ops/backends.h"
#include "ops/cpu/layernorm_row.h"
#include "ops/cpu/parallel.h"

namespace dtrain::cpu {

void layernorm(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight, const Tensor& bias,
               float eps) {
  const int64_t ch = x.size(-1);
  const int64_t rows = ch > 0 ? x.numel() / ch : mean.numel();
  const float* px = x.data<float>();
  const float* pw = weight.data<float>();
  const float* pb = bias.defined() ? bias.data<float>() : nullptr;
  float* po = out.data<float>();
  float* pm = mean.data<float>();
  float* pr = rstd.data<float>();
#pragma omp parallel for schedule(static) if (rows * ch > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) layernorm_row(px + r * ch, po + r * ch, pw, pb, ch, eps, pm[r], pr[r]);
}

void layernorm_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd) {
  const int64_t ch = x.size(-1);
  if (ch == 0) return;
  const int64_t rows = x.numel() / ch;
  const float* px = x.data<float>();
  const float* pw = weight.data<float>();
  const float* pd = dout.data<float>();
  const float* pm = mean.data<float>();
  const float* pr = rstd.data<float>();
  float* pdx = dx.defined() ? dx.data<float>() : nullptr;
  float* pdw = dweight.defined() ? dweight.data<float>() : nullptr;
  float* pdb = dbias.defined() ? dbias.data<float>() : nullptr;
  const bool want_params = pdw != nullptr || pdb != nullptr;
  const int max_threads = rows * ch > kParallelGrain ? omp_get_max_threads() : 1;
  // Per-thread partial sums of dweight (first ch) and dbias (next ch).
  std::vector<float> partial(want_params ? static_cast<size_t>(max_threads) * 2 * ch : 0, 0.0f);
  int used_threads = 1;
#pragma omp parallel num_threads(max_threads)
  {
#pragma omp single
    used_threads = omp_get_num_threads();
    int64_t r0, r1;
    thread_range(rows, r0, r1);
    float* pw_acc = want_params ? partial.data() + static_cast<size_t>(omp_get_thread_num()) * 2 * ch : nullptr;
    float* pb_acc = want_params ? pw_acc + ch : nullptr;
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = px + r * ch;
      const float* dr = pd + r * ch;
      const float m = pm[r], s = pr[r];
      if (want_params) {
#pragma omp simd
        for (int64_t i = 0; i < ch; ++i) {
          pw_acc[i] += dr[i] * (xr[i] - m) * s;
          pb_acc[i] += dr[i];
        }
      }
      if (pdx != nullptr) {
        float g_mean = 0.0f, gx_mean = 0.0f;
#pragma omp simd reduction(+ : g_mean, gx_mean)
        for (int64_t i = 0; i < ch; ++i) {
          const float g = dr[i] * pw[i];
          g_mean += g;
          gx_mean += g * (xr[i] - m) * s;
        }
        g_mean /= static_cast<float>(ch);
        gx_mean /= static_cast<float>(ch);
        float* dxr = pdx + r * ch;
#pragma omp simd
        for (int64_t i = 0; i < ch; ++i) {
          const float xhat = (xr[i] - m) * s;
          dxr[i] += s * (dr[i] * pw[i] - g_mean - xhat * gx_mean);
        }
      }
    }
  }
  if (!want_params) return;
  for (int t = 0; t < used_threads; ++t) {
    const float* acc = partial.data() + static_cast<size_t>(t) * 2 * ch;
    if (pdw != nullptr) {
      for (int64_t i = 0; i < ch; ++i) pdw[i] += acc[i];
    }
    if (pdb != nullptr) {
      for (int64_t i = 0; i < ch; ++i) pdb[i] += acc[ch + i];
    }
  }
}

}  // namespace dtrain::cpu
