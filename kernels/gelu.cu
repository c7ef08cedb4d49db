// gelu and gelu_backward (tanh approximation, the CPU op's formula): the
// vectorised elementwise launch (elementwise.cuh), f32 math.
#include "common.cuh"
#include "elementwise.cuh"

namespace dtrain::cuda {
namespace {

// GELU, tanh approximation (the CPU op's formula):
// gelu(x) = 0.5 x (1 + tanh(s (x + 0.044715 x^3))), s = sqrt(2 / pi).
constexpr float kGeluS = 0.7978845608028654f;
constexpr float kGeluC = 0.044715f;
struct GeluF {
  __device__ float operator()(float, float x, float) const {
    const float u = kGeluS * (x + kGeluC * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
  }
};
// dx += dout * gelu'(x), gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) s (1 + 3 c x^2), t = tanh(u).
struct GeluBackwardF {
  __device__ float operator()(float dx, float dout, float x) const {
    const float u = kGeluS * (x + kGeluC * x * x * x);
    const float t = tanhf(u);
    const float grad = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kGeluS * (1.0f + 3.0f * kGeluC * x * x);
    return dx + dout * grad;
  }
};

}  // namespace

void gelu(Tensor& out, const Tensor& x) {
  const OpContext ctx(out);
  require_same_dtype("gelu", out.dtype(), {&x});
  dispatch_float(out.dtype(), "gelu", [&](auto tag) {
    using T = decltype(tag);
    launch_elementwise<false, false>(ctx, ptr<T>(out), ptr<T>(x), static_cast<const T*>(nullptr), out.numel(), GeluF{});
  });
}

void gelu_backward(Tensor& dx, const Tensor& dout, const Tensor& x) {
  const OpContext ctx(dx);
  require_same_dtype("gelu_backward", dx.dtype(), {&dout, &x});
  dispatch_float(dx.dtype(), "gelu_backward", [&](auto tag) {
    using T = decltype(tag);
    launch_elementwise<true, true>(ctx, ptr<T>(dx), ptr<T>(dout), ptr<T>(x), dx.numel(), GeluBackwardF{});
  });
}

}  // namespace dtrain::cuda
