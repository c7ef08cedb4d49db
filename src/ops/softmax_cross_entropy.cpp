// softmax_cross_entropy: validation and dispatch.
#include "ops/backends.h"
#include "ops/checks.h"
#include "ops/cpu_low_precision.h"

namespace dtrain::ops {

void softmax_cross_entropy(Tensor& losses, Tensor& dlogits, const Tensor& logits, const Tensor& targets,
                           float grad_scale, int32_t ignore_index) {
  const detail::OpChecker c("softmax_cross_entropy");
  c.defined({"logits", logits});
  c.defined({"targets", targets});
  c.defined({"losses", losses});
  c.float_dtype({"logits", logits});
  c.dim({"logits", logits}, 2);
  const int64_t n = logits.size(0), v = logits.size(1);
  if (v < 1) c.fail(detail::concat("argument 'logits' needs at least one class, got ", shape_str(logits.shape())));
  c.dtype({"targets", targets}, DType::i32);
  c.shape({"targets", targets}, {n});
  c.dtype({"losses", losses}, DType::f32);
  c.shape({"losses", losses}, {n});
  c.same_device({{"losses", losses}, {"dlogits", dlogits}, {"logits", logits}, {"targets", targets}});
  c.no_overlap({"losses", losses}, {"logits", logits});
  c.no_overlap({"losses", losses}, {"targets", targets});
  if (dlogits.defined()) {
    c.same_dtype({"dlogits", dlogits}, {"logits", logits});
    c.shape({"dlogits", dlogits}, logits.shape());
    // Each row is read completely before it is written, so dlogits may be logits itself.
    c.same_or_disjoint({"dlogits", dlogits}, {"logits", logits});
    c.no_overlap({"dlogits", dlogits}, {"targets", targets});
    c.no_overlap({"dlogits", dlogits}, {"losses", losses});
  }
  c.finite("grad_scale", grad_scale);
  c.indices_in_range({"targets", targets}, v, "the vocabulary size V of 'logits'", true, ignore_index);
  if (logits.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::softmax_cross_entropy(losses, dlogits, logits, targets, grad_scale, ignore_index));
  } else {
    detail::run_cpu_in_f32(cpu::softmax_cross_entropy, losses, dlogits, logits, targets, grad_scale, ignore_index);
  }
}

}  // namespace dtrain::ops
