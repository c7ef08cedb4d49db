// attention / attention_backward: validation and dispatch.
#include "ops/backends.h"
#include "ops/checks.h"
#include "ops/cpu_low_precision.h"

namespace dtrain::ops {
namespace {

// Checks qkv [B, T, 3C] against num_heads; returns {B, T, C}.
Shape check_qkv(const detail::OpChecker& c, const Tensor& qkv, int64_t num_heads) {
  c.defined({"qkv", qkv});
  c.float_dtype({"qkv", qkv});
  c.dim({"qkv", qkv}, 3);
  if (qkv.size(2) % 3 != 0) {
    c.fail(detail::concat("argument 'qkv' last dimension must be 3*C (q, k, v side by side), got ", qkv.size(2)));
  }
  const int64_t ch = qkv.size(2) / 3;
  if (num_heads < 1 || ch % num_heads != 0 || ch == 0) {
    c.fail(detail::concat("argument 'num_heads' must be >= 1 and divide C = ", ch, ", got ", num_heads));
  }
  return {qkv.size(0), qkv.size(1), ch};
}

}  // namespace

void attention(Tensor& out, Tensor& lse, const Tensor& qkv, int64_t num_heads) {
  const detail::OpChecker c("attention");
  const Shape btc = check_qkv(c, qkv, num_heads);
  c.defined({"out", out});
  c.defined({"lse", lse});
  c.same_dtype({"out", out}, {"qkv", qkv});
  c.dtype({"lse", lse}, DType::f32);
  c.same_device({{"out", out}, {"lse", lse}, {"qkv", qkv}});
  c.shape({"out", out}, btc);
  c.shape({"lse", lse}, {btc[0], num_heads, btc[1]});
  c.no_overlap({"out", out}, {"qkv", qkv});
  c.no_overlap({"lse", lse}, {"qkv", qkv});
  c.no_overlap({"lse", lse}, {"out", out});
  if (qkv.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::attention(out, lse, qkv, num_heads));
  } else {
    detail::run_cpu_in_f32(cpu::attention, out, lse, qkv, num_heads);
  }
}

void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                        int64_t num_heads) {
  const detail::OpChecker c("attention_backward");
  const Shape btc = check_qkv(c, qkv, num_heads);
  c.defined({"dqkv", dqkv});
  c.defined({"dout", dout});
  c.defined({"out", out});
  c.defined({"lse", lse});
  c.same_dtype({"dqkv", dqkv}, {"qkv", qkv});
  c.same_dtype({"dout", dout}, {"qkv", qkv});
  c.same_dtype({"out", out}, {"qkv", qkv});
  c.dtype({"lse", lse}, DType::f32);
  c.same_device({{"dqkv", dqkv}, {"dout", dout}, {"qkv", qkv}, {"out", out}, {"lse", lse}});
  c.shape({"dqkv", dqkv}, qkv.shape());
  c.shape({"dout", dout}, btc);
  c.shape({"out", out}, btc);
  c.shape({"lse", lse}, {btc[0], num_heads, btc[1]});
  c.no_overlap({"dqkv", dqkv}, {"qkv", qkv});
  c.no_overlap({"dqkv", dqkv}, {"dout", dout});
  c.no_overlap({"dqkv", dqkv}, {"out", out});
  c.no_overlap({"dqkv", dqkv}, {"lse", lse});
  if (qkv.is_cuda()) {
    DTRAIN_ON_CUDA(cuda::attention_backward(dqkv, dout, qkv, out, lse, num_heads));
  } else {
    detail::run_cpu_in_f32(cpu::attention_backward, dqkv, dout, qkv, out, lse, num_heads);
  }
}

}  // namespace dtrain::ops
