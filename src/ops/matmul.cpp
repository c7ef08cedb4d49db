// matmul / matmul_backward: validation and dispatch.
#include "ops/backends.h"
#include "ops/checks.h"
#include "ops/cpu_low_precision.h"

namespace dtrain::ops {
namespace {

struct MatmulDims {
  int64_t batch, m, n, k;
};

// Checks a, b (and out when defined) and returns the problem size.
MatmulDims check_matmul_inputs(const detail::OpChecker& c, const Tensor& a, const Tensor& b, bool trans_a,
                               bool trans_b) {
  c.defined({"a", a});
  c.defined({"b", b});
  c.float_dtype({"a", a});
  c.same_dtype({"b", b}, {"a", a});
  if (a.dim() != 2 && a.dim() != 3) {
    c.fail(detail::concat("argument 'a' must be 2-D or 3-D (batched), got ", shape_str(a.shape())));
  }
  c.dim({"b", b}, a.dim());
  const bool batched = a.dim() == 3;
  const int64_t batch = batched ? a.size(0) : 1;
  if (batched && b.size(0) != batch) {
    c.fail(detail::concat("argument 'b' has the wrong batch size: expected ", batch, " (from 'a'), got ", b.size(0)));
  }
  const int64_t m = trans_a ? a.size(-1) : a.size(-2);
  const int64_t ka = trans_a ? a.size(-2) : a.size(-1);
  const int64_t kb = trans_b ? b.size(-1) : b.size(-2);
  const int64_t n = trans_b ? b.size(-2) : b.size(-1);
  if (ka != kb) {
    c.fail(detail::concat("inner dimensions differ: op(a) is [", m, ", ", ka, "] and op(b) is [", kb, ", ", n,
                          "] (trans_a=", trans_a, ", trans_b=", trans_b, "); expected equal K"));
  }
  return {batch, m, n, ka};
}

Shape out_shape(const Tensor& a, const MatmulDims& d) {
  return a.dim() == 3 ? Shape{d.batch, d.m, d.n} : Shape{d.m, d.n};
}

}  // namespace

void matmul(Tensor& out, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float alpha, float beta) {
  const detail::OpChecker c("matmul");
  const MatmulDims d = check_matmul_inputs(c, a, b, trans_a, trans_b);
  c.defined({"out", out});
  c.same_dtype({"out", out}, {"a", a});
  c.same_device({{"out", out}, {"a", a}, {"b", b}});
  c.shape({"out", out}, out_shape(a, d));
  c.no_overlap({"out", out}, {"a", a});
  c.no_overlap({"out", out}, {"b", b});
  c.finite("alpha", alpha);
  c.finite("beta", beta);
  if (out.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::matmul(out, a, b, trans_a, trans_b, alpha, beta));
  } else {
    detail::run_cpu_in_f32(cpu::matmul, out, a, b, trans_a, trans_b, alpha, beta);
  }
}

void matmul_backward(Tensor& da, Tensor& db, const Tensor& dout, const Tensor& a, const Tensor& b, bool trans_a,
                     bool trans_b) {
  const detail::OpChecker c("matmul_backward");
  const MatmulDims d = check_matmul_inputs(c, a, b, trans_a, trans_b);
  c.defined({"dout", dout});
  c.same_dtype({"dout", dout}, {"a", a});
  c.same_device({{"dout", dout}, {"a", a}, {"b", b}, {"da", da}, {"db", db}});
  c.shape({"dout", dout}, out_shape(a, d));
  if (da.defined()) {
    c.same_dtype({"da", da}, {"a", a});
    c.shape({"da", da}, a.shape());
    c.no_overlap({"da", da}, {"a", a});
    c.no_overlap({"da", da}, {"b", b});
    c.no_overlap({"da", da}, {"dout", dout});
  }
  if (db.defined()) {
    c.same_dtype({"db", db}, {"b", b});
    c.shape({"db", db}, b.shape());
    c.no_overlap({"db", db}, {"a", a});
    c.no_overlap({"db", db}, {"b", b});
    c.no_overlap({"db", db}, {"dout", dout});
    c.no_overlap({"db", db}, {"da", da});
  }
  if (!da.defined() && !db.defined()) return;
  if (dout.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::matmul_backward(da, db, dout, a, b, trans_a, trans_b));
  } else {
    detail::run_cpu_in_f32(cpu::matmul_backward, da, db, dout, a, b, trans_a, trans_b);
  }
}

}  // namespace dtrain::ops
