// CPU linear: out = x @ W^T + b as one sgemm over all rows, then a bias pass.
#include "ops/backends.h"
#include "ops/cpu/column_sum.h"
#include "ops/cpu/gemm.h"

namespace dtrain::cpu {

void linear(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const int64_t ic = weight.size(1), oc = weight.size(0);
  const int64_t rows = ic > 0 ? x.numel() / ic : out.numel() / (oc > 0 ? oc : 1);
  float* po = out.data<float>();
  sgemm(false, true, rows, oc, ic, 1.0f, x.data<float>(), weight.data<float>(), 0.0f, po);
  if (bias.defined()) {
    const float* pb = bias.data<float>();
#pragma omp parallel for schedule(static) if (rows * oc > (1 << 15))
    for (int64_t r = 0; r < rows; ++r) {
      float* row = po + r * oc;
#pragma omp simd
      for (int64_t j = 0; j < oc; ++j) row[j] += pb[j];
    }
  }
}

void linear_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x,
                     const Tensor& weight) {
  const int64_t ic = weight.size(1), oc = weight.size(0);
  const int64_t rows = oc > 0 ? dout.numel() / oc : (ic > 0 ? x.numel() / ic : 0);
  const float* pd = dout.data<float>();
  // dx [rows, ic] += dout [rows, oc] @ W [oc, ic]
  if (dx.defined()) sgemm(false, false, rows, ic, oc, 1.0f, pd, weight.data<float>(), 1.0f, dx.data<float>());
  // dW [oc, ic] += dout^T [oc, rows] @ x [rows, ic]
  if (dweight.defined()) sgemm(true, false, oc, ic, rows, 1.0f, pd, x.data<float>(), 1.0f, dweight.data<float>());
  if (dbias.defined()) column_sum_accumulate(dbias.data<float>(), pd, rows, oc);
}

}  // namespace dtrain::cpu
