// embedding / embedding_backward: validation and dispatch.
#include "ops/backends.h"
#include "ops/checks.h"
#include "ops/cpu_low_precision.h"

namespace dtrain::ops {

void embedding(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe) {
  const detail::OpChecker c("embedding");
  c.defined({"tokens", tokens});
  c.defined({"wte", wte});
  c.defined({"wpe", wpe});
  c.defined({"out", out});
  c.dtype({"tokens", tokens}, DType::i32);
  c.dim({"tokens", tokens}, 2);
  c.float_dtype({"wte", wte});
  c.dim({"wte", wte}, 2);
  c.same_dtype({"wpe", wpe}, {"wte", wte});
  c.same_dtype({"out", out}, {"wte", wte});
  c.dim({"wpe", wpe}, 2);
  const int64_t b = tokens.size(0), t = tokens.size(1), ch = wte.size(1);
  if (wpe.size(1) != ch) {
    c.fail(detail::concat("argument 'wpe' has the wrong shape: expected [maxT, ", ch, "] (C from 'wte'), got ",
                          shape_str(wpe.shape())));
  }
  if (wpe.size(0) < t) {
    c.fail(detail::concat("argument 'tokens' has a sequence longer than 'wpe' holds: expected T <= ", wpe.size(0),
                          ", got ", t));
  }
  c.shape({"out", out}, {b, t, ch});
  c.same_device({{"out", out}, {"tokens", tokens}, {"wte", wte}, {"wpe", wpe}});
  c.no_overlap({"out", out}, {"tokens", tokens});
  c.no_overlap({"out", out}, {"wte", wte});
  c.no_overlap({"out", out}, {"wpe", wpe});
  c.indices_in_range({"tokens", tokens}, wte.size(0), "the vocabulary size V, rows of 'wte'");
  if (wte.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::embedding(out, tokens, wte, wpe));
  } else {
    detail::run_cpu_in_f32(cpu::embedding, out, tokens, wte, wpe);
  }
}

void embedding_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens) {
  const detail::OpChecker c("embedding_backward");
  c.defined({"dout", dout});
  c.defined({"tokens", tokens});
  c.dtype({"tokens", tokens}, DType::i32);
  c.dim({"tokens", tokens}, 2);
  c.float_dtype({"dout", dout});
  c.dim({"dout", dout}, 3);
  const int64_t b = tokens.size(0), t = tokens.size(1), ch = dout.size(2);
  c.shape({"dout", dout}, {b, t, ch});
  c.same_device({{"dwte", dwte}, {"dwpe", dwpe}, {"dout", dout}, {"tokens", tokens}});
  if (dwte.defined()) {
    c.same_dtype({"dwte", dwte}, {"dout", dout});
    c.dim({"dwte", dwte}, 2);
    if (dwte.size(1) != ch) {
      c.fail(detail::concat("argument 'dwte' has the wrong shape: expected [V, ", ch, "] (C from 'dout'), got ",
                            shape_str(dwte.shape())));
    }
    c.no_overlap({"dwte", dwte}, {"dout", dout});
    c.no_overlap({"dwte", dwte}, {"tokens", tokens});
    c.indices_in_range({"tokens", tokens}, dwte.size(0), "the vocabulary size V, rows of 'dwte'");
  }
  if (dwpe.defined()) {
    c.same_dtype({"dwpe", dwpe}, {"dout", dout});
    c.dim({"dwpe", dwpe}, 2);
    if (dwpe.size(1) != ch || dwpe.size(0) < t) {
      c.fail(detail::concat("argument 'dwpe' has the wrong shape: expected [maxT >= ", t, ", ", ch, "], got ",
                            shape_str(dwpe.shape())));
    }
    c.no_overlap({"dwpe", dwpe}, {"dout", dout});
    c.no_overlap({"dwpe", dwpe}, {"tokens", tokens});
    c.no_overlap({"dwpe", dwpe}, {"dwte", dwte});
  }
  if (!dwte.defined() && !dwpe.defined()) return;
  if (dout.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::embedding_backward(dwte, dwpe, dout, tokens));
  } else {
    detail::run_cpu_in_f32(cpu::embedding_backward, dwte, dwpe, dout, tokens);
  }
}

}  // namespace dtrain::ops
