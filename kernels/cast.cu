// cast between f32, bf16 and f16: the vectorised elementwise launch
// (elementwise.cuh) with an identity functor; load/store do the rounding.
#include "common.cuh"
#include "elementwise.cuh"

namespace dtrain::cuda {
namespace {

struct CopyF {
  __device__ float operator()(float, float x, float) const { return x; }
};

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

void cast(Tensor& out, const Tensor& x) {
  const OpContext ctx(out);
  dispatch_float(out.dtype(), "cast", [&](auto otag) {
    dispatch_float(x.dtype(), "cast", [&](auto xtag) {
      using TO = decltype(otag);
      using TX = decltype(xtag);
      launch_elementwise<false, false>(ctx, ptr<TO>(out), ptr<TX>(x), static_cast<const TX*>(nullptr), out.numel(),
                                       CopyF{});
    });
  });
}

}  // namespace dtrain::cuda
