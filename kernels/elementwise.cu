// add, add_, scale, cast, gelu, gelu_backward: one vectorised kernel each
// (elementwise.cuh), f32 math.
#include "common.cuh"
#include "elementwise.cuh"

namespace dtrain::cuda {
namespace {

struct AddF {
  __device__ float operator()(float, float a, float b) const { return a + b; }
};
struct AxpyF {  // y + alpha * x
  float alpha;
  __device__ float operator()(float y, float x, float) const { return y + alpha * x; }
};
struct ScaleF {
  float alpha;
  __device__ float operator()(float, float x, float) const { return alpha * x; }
};
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

void add(Tensor& out, const Tensor& a, const Tensor& b) {
  const OpContext ctx(out);
  require_same_dtype("add", out.dtype(), {&a, &b});
  dispatch_float(out.dtype(), "add", [&](auto tag) {
    using T = decltype(tag);
    launch_elementwise<false, true>(ctx, ptr<T>(out), ptr<T>(a), ptr<T>(b), out.numel(), AddF{});
  });
}

void add_(Tensor& y, const Tensor& x, float alpha) {
  const OpContext ctx(y);
  // y and x may differ in dtype (an f32 accumulator taking bf16 gradients).
  dispatch_float(y.dtype(), "add_", [&](auto ytag) {
    dispatch_float(x.dtype(), "add_", [&](auto xtag) {
      using TY = decltype(ytag);
      using TX = decltype(xtag);
      launch_elementwise<true, false>(ctx, ptr<TY>(y), ptr<TX>(x), static_cast<const TX*>(nullptr), y.numel(),
                                      AxpyF{alpha});
    });
  });
}

void scale(Tensor& out, const Tensor& x, float alpha) {
  const OpContext ctx(out);
  require_same_dtype("scale", out.dtype(), {&x});
  dispatch_float(out.dtype(), "scale", [&](auto tag) {
    using T = decltype(tag);
    launch_elementwise<false, false>(ctx, ptr<T>(out), ptr<T>(x), static_cast<const T*>(nullptr), out.numel(),
                                     ScaleF{alpha});
  });
}

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
