// matmul_dgelu_bgrad: the next linear's input gradient, through the GELU, as
// one cuBLASLt GEMM: dpre = (dout @ W) * gelu'(pre) with the column sums of
// dpre (the bias gradient of the layer before the GELU) from the same epilogue
// (CUBLASLT_EPILOGUE_DGELU_BGRAD). cuBLASLt writes the bias gradient; dtrain's
// gradients accumulate, so it goes to scratch and is added to dbias. When
// cuBLASLt offers no algorithm: the plain GEMM, gelu_backward and the column
// sum kernels. Each call is counted either way (ops::fused_epilogue_counts).
#include "column_sum.cuh"
#include "common.cuh"
#include "gemm.cuh"
#include "ops/backends.h"
#include "ops/fused_epilogue.h"

namespace dtrain::cuda {

void matmul_dgelu_bgrad(Tensor& dpre, Tensor& dbias, const Tensor& dout, const Tensor& weight, const Tensor& pre) {
  const OpContext ctx(dpre);
  require_same_dtype("matmul_dgelu_bgrad", dout.dtype(), {&weight, &pre, &dpre, &dbias});
  const int64_t rows = rows_of(dout), hidden = weight.size(1);
  GemmArgs g;  // dpre[R, H] = dout[R, C] @ W[C, H]
  g.a = dout.data_ptr();
  g.b = weight.data_ptr();
  g.out = dpre.data_ptr();
  g.in_type = g.out_type = dout.dtype();
  g.m = rows;
  g.n = hidden;
  g.k = weight.size(0);
  GemmArgs fused_args = g;
  fused_args.epilogue = GemmEpilogue::dgelu_bgrad;
  fused_args.aux = pre.data_ptr();
  Tensor bgrad;
  if (dbias.defined()) {
    bgrad = ctx.scratch({hidden}, dbias.dtype());
    fused_args.bgrad = bgrad.data_ptr();
  }
  if (gemm_with_epilogue(fused_args, ctx.stream(), ctx.device().index())) {
    if (dbias.defined()) add_(dbias, bgrad, 1.0f);
    ops::detail::count_fused_epilogue(true);
    return;
  }
  Tensor product = ctx.scratch(dpre.shape(), dpre.dtype());
  g.out = product.data_ptr();
  gemm(g, ctx.stream(), ctx.device().index());
  DTRAIN_CUDA_CHECK(cudaMemsetAsync(dpre.data_ptr(), 0, dpre.nbytes(), ctx.stream()));
  gelu_backward(dpre, product, pre);
  if (dbias.defined()) {
    dispatch_float(dpre.dtype(), "matmul_dgelu_bgrad", [&](auto tag) {
      using T = decltype(tag);
      column_sum_accumulate<T>(ctx, ptr<T>(dbias), ptr<T>(dpre), rows, hidden);
    });
  }
  ops::detail::count_fused_epilogue(false);
}

}  // namespace dtrain::cuda
