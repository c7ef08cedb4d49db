// linear_gelu: one cuBLASLt GEMM whose epilogue adds the bias, saves that sum
// (pre) and applies GELU (CUBLASLT_EPILOGUE_GELU_AUX_BIAS; cuBLASLt's GELU is
// the tanh approximation, the same formula as gelu.cu). When cuBLASLt offers
// no algorithm, the unfused linear and gelu kernels run instead; each call is
// counted either way (ops::fused_epilogue_counts).
#include "common.cuh"
#include "gemm.cuh"
#include "ops/backends.h"
#include "ops/fused_epilogue.h"

namespace dtrain::cuda {

void linear_gelu(Tensor& out, Tensor& pre, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const OpContext ctx(out);
  require_same_dtype("linear_gelu", x.dtype(), {&weight, &bias, &out, &pre});
  GemmArgs g;
  g.a = x.data_ptr();
  g.b = weight.data_ptr();
  g.bias = bias.defined() ? bias.data_ptr() : nullptr;
  g.out = out.data_ptr();
  g.aux = pre.data_ptr();
  g.epilogue = GemmEpilogue::gelu_aux;
  g.in_type = g.out_type = x.dtype();
  g.trans_b = true;
  g.k = x.size(-1);
  g.m = rows_of(x);
  g.n = weight.size(0);
  const bool fused = gemm_with_epilogue(g, ctx.stream(), ctx.device().index());
  if (!fused) {
    linear(pre, x, weight, bias);
    gelu(out, pre);
  }
  ops::detail::count_fused_epilogue(fused);
}

}  // namespace dtrain::cuda
