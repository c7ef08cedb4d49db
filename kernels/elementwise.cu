// add, add_, scale: one vectorised launch each (elementwise.cuh), f32 math.
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

}  // namespace dtrain::cuda
