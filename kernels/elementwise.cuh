// Internal: the one vectorised elementwise launch behind the memory-bound ops
// add, add_, scale (elementwise.cu), cast (cast.cu) and gelu, gelu_backward (gelu.cu).
//
// Each thread handles 8 consecutive elements with 16-byte loads and stores
// when every pointer is 16-byte aligned (the common case: allocator blocks
// are 256-byte aligned), else one element at a time. The functor gets the
// old output value (if kReadsOut), a[i] and b[i] (if kHasB), all as f32.
#pragma once

#include "common.cuh"

namespace dtrain::cuda {

template <int VEC, bool kReadsOut, bool kHasB, typename TOut, typename TA, typename TB, typename F>
__global__ void elementwise_kernel(TOut* out, const TA* a, const TB* b, int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t nvec = n / VEC;
  for (int64_t v = first; v < nvec; v += stride) {
    float va[VEC], vb[VEC], vo[VEC];
    load_vec<TA, VEC>(a + v * VEC, va);
    if constexpr (kHasB) load_vec<TB, VEC>(b + v * VEC, vb);
    if constexpr (kReadsOut) load_vec<TOut, VEC>(out + v * VEC, vo);
#pragma unroll
    for (int i = 0; i < VEC; ++i) vo[i] = f(kReadsOut ? vo[i] : 0.0f, va[i], kHasB ? vb[i] : 0.0f);
    store_vec<TOut, VEC>(out + v * VEC, vo);
  }
  for (int64_t i = nvec * VEC + first; i < n; i += stride) {  // the tail (fewer than VEC elements)
    const float o = kReadsOut ? load(out[i]) : 0.0f;
    const float bv = kHasB ? load(b[i]) : 0.0f;
    out[i] = store<TOut>(f(o, load(a[i]), bv));
  }
}

// out[i] = f(out[i] or 0, a[i], b[i] or 0) for i < n, on ctx's stream.
// b may be nullptr (then TB is ignored and kHasB must be false).
template <bool kReadsOut, bool kHasB, typename TOut, typename TA, typename TB, typename F>
void launch_elementwise(const OpContext& ctx, TOut* out, const TA* a, const TB* b, int64_t n, F f) {
  if (n == 0) return;
  constexpr int kThreads = 256;
  const bool vec = aligned16(out) && aligned16(a) && (!kHasB || aligned16(b));
  if (vec) {
    constexpr int kVec = 8;
    const unsigned blocks = blocks_for(n / kVec + 1, kThreads, 16384);
    elementwise_kernel<kVec, kReadsOut, kHasB><<<blocks, kThreads, 0, ctx.stream()>>>(out, a, b, n, f);
  } else {
    const unsigned blocks = blocks_for(n, kThreads, 16384);
    elementwise_kernel<1, kReadsOut, kHasB><<<blocks, kThreads, 0, ctx.stream()>>>(out, a, b, n, f);
  }
  DTRAIN_LAUNCH_CHECK();
}

}  // namespace dtrain::cuda
