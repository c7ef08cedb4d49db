// CPU matmul and its backward: one sgemm per batch entry.
#include "ops/backends.h"
#include "ops/cpu/gemm.h"

namespace dtrain::cpu {

void matmul(Tensor& out, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float alpha, float beta) {
  const int64_t batch = a.dim() == 3 ? a.size(0) : 1;
  const int64_t m = out.size(-2), n = out.size(-1);
  const int64_t k = trans_a ? a.size(-2) : a.size(-1);
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* pc = out.data<float>();
  for (int64_t i = 0; i < batch; ++i) {
    sgemm(trans_a, trans_b, m, n, k, alpha, pa + i * m * k, pb + i * k * n, beta, pc + i * m * n);
  }
}

// out = op(a) op(b). With A = op(a), B = op(b): dA = dout B^T, dB = A^T dout,
// and da = dA (or dA^T when trans_a), db = dB (or dB^T when trans_b). Each case
// is one sgemm on the stored (untransposed) buffers, accumulating (beta = 1).
void matmul_backward(Tensor& da, Tensor& db, const Tensor& dout, const Tensor& a, const Tensor& b, bool trans_a,
                     bool trans_b) {
  const int64_t batch = a.dim() == 3 ? a.size(0) : 1;
  const int64_t m = dout.size(-2), n = dout.size(-1);
  const int64_t k = trans_a ? a.size(-2) : a.size(-1);
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  const float* pd = dout.data<float>();
  for (int64_t i = 0; i < batch; ++i) {
    const float* ai = pa + i * m * k;
    const float* bi = pb + i * k * n;
    const float* di = pd + i * m * n;
    if (da.defined()) {
      float* dai = da.data<float>() + i * m * k;
      if (!trans_a) {
        // da [m,k] += dout [m,n] @ B^T, B^T = b^T ([n,k]) or b ([n,k] when trans_b)
        sgemm(false, !trans_b, m, k, n, 1.0f, di, bi, 1.0f, dai);
      } else {
        // da [k,m] += B [k,n] @ dout^T
        sgemm(trans_b, true, k, m, n, 1.0f, bi, di, 1.0f, dai);
      }
    }
    if (db.defined()) {
      float* dbi = db.data<float>() + i * k * n;
      if (!trans_b) {
        // db [k,n] += A^T [k,m] @ dout [m,n]
        sgemm(!trans_a, false, k, n, m, 1.0f, ai, di, 1.0f, dbi);
      } else {
        // db [n,k] += dout^T [n,m] @ A [m,k]
        sgemm(true, trans_a, n, k, m, 1.0f, di, ai, 1.0f, dbi);
      }
    }
  }
}

}  // namespace dtrain::cpu
