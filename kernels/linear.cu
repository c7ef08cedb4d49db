// linear and linear_backward: gemm() with the bias fused into the forward
// epilogue; the bias gradient is a column sum (column_sum.cuh).
#include "column_sum.cuh"
#include "common.cuh"
#include "gemm.cuh"

namespace dtrain::cuda {

void linear(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const OpContext ctx(out);
  require_same_dtype("linear", x.dtype(), {&weight, &bias, &out});
  GemmArgs g;
  g.a = x.data_ptr();
  g.b = weight.data_ptr();
  g.bias = bias.defined() ? bias.data_ptr() : nullptr;  // fused into the GEMM epilogue
  g.out = out.data_ptr();
  g.in_type = g.out_type = x.dtype();
  g.trans_b = true;
  g.k = x.size(-1);
  g.m = rows_of(x);
  g.n = weight.size(0);
  gemm(g, ctx.stream(), ctx.device().index());
}

void linear_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x,
                     const Tensor& weight) {
  const OpContext ctx(dout);
  require_same_dtype("linear_backward", dout.dtype(), {&x, &weight, &dx, &dweight, &dbias});
  const int64_t rows = rows_of(dout), out_features = weight.size(0), in_features = weight.size(1);
  GemmArgs g;
  g.in_type = g.out_type = dout.dtype();
  g.beta = 1.0f;
  if (dx.defined()) {  // dx[R, IC] += dout[R, OC] @ W[OC, IC]
    GemmArgs d = g;
    d.a = dout.data_ptr();
    d.b = weight.data_ptr();
    d.out = dx.data_ptr();
    d.m = rows;
    d.n = in_features;
    d.k = out_features;
    gemm(d, ctx.stream(), ctx.device().index());
  }
  if (dweight.defined()) {  // dW[OC, IC] += dout^T @ x
    GemmArgs d = g;
    d.a = dout.data_ptr();
    d.b = x.data_ptr();
    d.out = dweight.data_ptr();
    d.trans_a = true;
    d.m = out_features;
    d.n = in_features;
    d.k = rows;
    gemm(d, ctx.stream(), ctx.device().index());
  }
  if (dbias.defined()) {
    dispatch_float(dout.dtype(), "linear_backward", [&](auto tag) {
      using T = decltype(tag);
      column_sum_accumulate<T>(ctx, ptr<T>(dbias), ptr<T>(dout), rows, out_features);
    });
  }
}

}  // namespace dtrain::cuda
