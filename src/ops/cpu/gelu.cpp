// CPU GELU (tanh approximation). Eigen's array tanh is vectorised (a rational
// approximation accurate to a few ulp), which keeps these loops memory-bound;
// OpenMP splits the array into one block per thread.
#include <Eigen/Core>

#include "ops/backends.h"
#include "ops/cpu/parallel.h"

namespace dtrain::cpu {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCoeff = 0.044715f;
using ConstArr = Eigen::Map<const Eigen::ArrayXf>;
using Arr = Eigen::Map<Eigen::ArrayXf>;
constexpr int kBlock = 1024;  // keeps the backward's temporaries on the stack and in L1
using BlockArr = Eigen::Array<float, Eigen::Dynamic, 1, 0, kBlock, 1>;

}  // namespace

void gelu(Tensor& out, const Tensor& x) {
  const int64_t n = x.numel();
  const float* px = x.data<float>();
  float* po = out.data<float>();
#pragma omp parallel if (n > kParallelGrain)
  {
    int64_t i0, i1;
    thread_range(n, i0, i1);
    if (i1 > i0) {
      const ConstArr xs(px + i0, i1 - i0);
      Arr os(po + i0, i1 - i0);
      os = 0.5f * xs * (1.0f + (kSqrt2OverPi * (xs + kCoeff * xs * xs * xs)).tanh());
    }
  }
}

void gelu_backward(Tensor& dx, const Tensor& dout, const Tensor& x) {
  const int64_t n = x.numel();
  const float* px = x.data<float>();
  const float* pd = dout.data<float>();
  float* pdx = dx.data<float>();
#pragma omp parallel if (n > kParallelGrain)
  {
    int64_t i0, i1;
    thread_range(n, i0, i1);
    for (int64_t b0 = i0; b0 < i1; b0 += kBlock) {
      const int64_t len = b0 + kBlock < i1 ? kBlock : i1 - b0;
      const ConstArr xs(px + b0, len);
      const ConstArr ds(pd + b0, len);
      Arr dxs(pdx + b0, len);
      const BlockArr th = (kSqrt2OverPi * (xs + kCoeff * xs * xs * xs)).tanh();
      // d/dx [0.5 x (1 + tanh(u))] = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) u'
      const BlockArr local =
          0.5f * (1.0f + th) + 0.5f * xs * (1.0f - th * th) * (kSqrt2OverPi * (1.0f + 3.0f * kCoeff * xs * xs));
      dxs += local * ds;
    }
  }
}

}  // namespace dtrain::cpu
