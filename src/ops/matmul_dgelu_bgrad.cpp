// matmul_dgelu_bgrad: validation and dispatch (the MLP's backward through
// proj's input and the GELU, with fc's bias gradient).
#include "ops/backends.h"
#include "ops/checks.h"
#include "ops/cpu_low_precision.h"

namespace dtrain::ops {

void matmul_dgelu_bgrad(Tensor& dpre, Tensor& dbias, const Tensor& dout, const Tensor& weight, const Tensor& pre) {
  const detail::OpChecker c("matmul_dgelu_bgrad");
  c.defined({"dout", dout});
  c.defined({"weight", weight});
  c.defined({"pre", pre});
  c.defined({"dpre", dpre});
  c.float_dtype({"dout", dout});
  c.same_dtype({"weight", weight}, {"dout", dout});
  c.same_dtype({"pre", pre}, {"dout", dout});
  c.same_dtype({"dpre", dpre}, {"dout", dout});
  c.min_dim({"dout", dout}, 1);
  c.dim({"weight", weight}, 2);
  if (weight.size(0) != dout.size(-1)) {
    c.fail(detail::concat("argument 'weight' has the wrong shape: expected [", dout.size(-1), ", H] (C from 'dout' ",
                          shape_str(dout.shape()), "), got ", shape_str(weight.shape())));
  }
  Shape hidden_shape = dout.shape();
  hidden_shape.back() = weight.size(1);
  c.shape({"pre", pre}, hidden_shape);
  c.shape({"dpre", dpre}, hidden_shape);
  const detail::Arg inputs[] = {{"dout", dout}, {"weight", weight}, {"pre", pre}};
  for (const detail::Arg& in : inputs) c.no_overlap({"dpre", dpre}, in);
  if (dbias.defined()) {
    c.same_dtype({"dbias", dbias}, {"dout", dout});
    c.shape({"dbias", dbias}, {weight.size(1)});
    for (const detail::Arg& in : inputs) c.no_overlap({"dbias", dbias}, in);
    c.no_overlap({"dbias", dbias}, {"dpre", dpre});
  }
  c.same_device({{"dpre", dpre}, {"dbias", dbias}, {"dout", dout}, {"weight", weight}, {"pre", pre}});
  if (dpre.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::matmul_dgelu_bgrad(dpre, dbias, dout, weight, pre));
  } else {
    detail::run_cpu_in_f32(cpu::matmul_dgelu_bgrad, dpre, dbias, dout, weight, pre);
  }
}

}  // namespace dtrain::ops
