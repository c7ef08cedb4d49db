// CPU matmul_dgelu_bgrad, composed: the product dout @ W into a temporary,
// gelu_backward into the zeroed dpre, then dpre's column sums added to dbias.
// The same kernels, in the same order, as an unfused MLP backward, so both
// give the same bits.
#include <cstring>

#include "ops/backends.h"
#include "ops/cpu/column_sum.h"
#include "ops/cpu/gemm.h"
#include "ops/fused_epilogue.h"

namespace dtrain::cpu {

void matmul_dgelu_bgrad(Tensor& dpre, Tensor& dbias, const Tensor& dout, const Tensor& weight, const Tensor& pre) {
  const int64_t channels = weight.size(0), hidden = weight.size(1);
  const int64_t rows = hidden > 0 ? pre.numel() / hidden : 0;
  Tensor product = Tensor::empty(dpre.shape(), DType::f32);
  // product [rows, hidden] = dout [rows, channels] @ W [channels, hidden]
  sgemm(false, false, rows, hidden, channels, 1.0f, dout.data<float>(), weight.data<float>(), 0.0f,
        product.data<float>());
  std::memset(dpre.data<float>(), 0, dpre.nbytes());
  gelu_backward(dpre, product, pre);
  if (dbias.defined()) column_sum_accumulate(dbias.data<float>(), dpre.data<float>(), rows, hidden);
  ops::detail::count_fused_epilogue(false);
}

}  // namespace dtrain::cpu
