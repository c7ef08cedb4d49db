// cast: validation and dispatch.
#include "ops/backends.h"
#include "ops/checks.h"

namespace dtrain::ops {

void cast(Tensor& out, const Tensor& x) {
  const detail::OpChecker c("cast");
  c.defined({"out", out});
  c.defined({"x", x});
  for (const detail::Arg a : {detail::Arg{"x", x}, detail::Arg{"out", out}}) {
    const DType dt = a.tensor.dtype();
    if (dt != DType::f32 && dt != DType::bf16 && dt != DType::f16) {
      c.fail(detail::concat("argument '", a.name, "' has the wrong dtype: expected f32, bf16 or f16, got ",
                            dtype_name(dt)));
    }
  }
  c.same_device({{"out", out}, {"x", x}});
  c.shape({"out", out}, x.shape());
  c.no_overlap({"out", out}, {"x", x});
  if (out.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::cast(out, x));
  } else {
    cpu::cast(out, x);
  }
}

}  // namespace dtrain::ops
