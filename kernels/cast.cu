// cast between f32, bf16 and f16: the vectorised elementwise launch
// (elementwise.cuh) with an identity functor; load/store do the rounding.
#include "common.cuh"
#include "elementwise.cuh"

namespace dtrain::cuda {
namespace {

struct CopyF {
  __device__ float operator()(float, float x, float) const { return x; }
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
