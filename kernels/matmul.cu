// matmul and matmul_backward: shape bookkeeping around gemm().
#include "common.cuh"
#include "dtrain/ops.h"
#include "gemm.cuh"

namespace dtrain::cuda {
namespace {

// out (+)= alpha * op(a) @ op(b) for 2-D or batched 3-D tensors.
void matmul_into(const OpContext& ctx, Tensor& out, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
                 float alpha, float beta) {
  require_same_dtype("matmul", a.dtype(), {&b});
  GemmArgs g;
  g.a = a.data_ptr();
  g.b = b.data_ptr();
  g.out = out.data_ptr();
  g.in_type = a.dtype();
  g.out_type = out.dtype();
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.m = trans_a ? a.size(-1) : a.size(-2);
  g.k = trans_a ? a.size(-2) : a.size(-1);
  g.n = trans_b ? b.size(-2) : b.size(-1);
  g.batch = out.dim() == 3 ? out.size(0) : 1;
  g.stride_a = a.dim() == 3 ? g.m * g.k : 0;
  g.stride_b = b.dim() == 3 ? g.k * g.n : 0;
  g.stride_out = g.m * g.n;
  g.alpha = alpha;
  g.beta = beta;
  gemm(g, ctx.stream(), ctx.device().index());
}

}  // namespace

void matmul(Tensor& out, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float alpha, float beta) {
  const OpContext ctx(out);
  matmul_into(ctx, out, a, b, trans_a, trans_b, alpha, beta);
}

// With A = op(a), B = op(b), out = A @ B:
//   dA = dout @ B^T  ->  da = dout @ op(b)^T        (a not transposed)
//                        da = op(b) @ dout^T        (a transposed: da = dA^T)
//   dB = A^T @ dout  ->  db = op(a)^T @ dout        (b not transposed)
//                        db = dout^T @ op(a)        (b transposed: db = dB^T)
// op(x)^T is x with the flag flipped. Every product accumulates (beta = 1).
void matmul_backward(Tensor& da, Tensor& db, const Tensor& dout, const Tensor& a, const Tensor& b, bool trans_a,
                     bool trans_b) {
  const OpContext ctx(dout);
  if (da.defined()) {
    if (!trans_a) {
      matmul_into(ctx, da, dout, b, false, !trans_b, 1.0f, 1.0f);
    } else {
      matmul_into(ctx, da, b, dout, trans_b, true, 1.0f, 1.0f);
    }
  }
  if (db.defined()) {
    if (!trans_b) {
      matmul_into(ctx, db, a, dout, !trans_a, false, 1.0f, 1.0f);
    } else {
      matmul_into(ctx, db, dout, a, true, trans_a, 1.0f, 1.0f);
    }
  }
}

}  // namespace dtrain::cuda
