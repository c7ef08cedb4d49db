// CPU casts between f32, bf16 and f16, all rounding to nearest-even.
// f32 -> bf16 is the integer rounding of dtype.h, which vectorises as written;
// f16 uses the F16C instructions when the build targets them (the library is
// built for x86-64-v3, which has them) and the scalar dtype.h routine otherwise.
// Both give results identical to dtype.h, NaN and infinities included.
#include <cstring>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "ops/backends.h"
#include "ops/cpu/parallel.h"

namespace dtrain::cpu {
namespace {

void f32_to_bf16(const float* src, uint16_t* dst, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) dst[i] = float_to_bf16(src[i]);
}

void bf16_to_f32(const uint16_t* src, float* dst, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(src[i]);
}

void f32_to_f16(const float* src, uint16_t* dst, int64_t n) {
#pragma omp parallel if (n > kParallelGrain)
  {
    int64_t i0, i1;
    thread_range(n, i0, i1);
    int64_t i = i0;
#if defined(__F16C__)
    for (; i + 8 <= i1; i += 8) {
      const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
    }
#endif
    for (; i < i1; ++i) dst[i] = float_to_f16(src[i]);
  }
}

void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
#pragma omp parallel if (n > kParallelGrain)
  {
    int64_t i0, i1;
    thread_range(n, i0, i1);
    int64_t i = i0;
#if defined(__F16C__)
    for (; i + 8 <= i1; i += 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
#endif
    for (; i < i1; ++i) dst[i] = f16_to_float(src[i]);
  }
}

}  // namespace

void cast(Tensor& out, const Tensor& x) {
  const int64_t n = x.numel();
  const DType from = x.dtype(), to = out.dtype();
  if (from == to) {
    std::memcpy(out.data_ptr(), x.data_ptr(), x.nbytes());
    return;
  }
  const auto* src16 = static_cast<const uint16_t*>(x.data_ptr());
  auto* dst16 = static_cast<uint16_t*>(out.data_ptr());
  if (from == DType::f32 && to == DType::bf16) {
    f32_to_bf16(x.data<float>(), dst16, n);
  } else if (from == DType::bf16 && to == DType::f32) {
    bf16_to_f32(src16, out.data<float>(), n);
  } else if (from == DType::f32 && to == DType::f16) {
    f32_to_f16(x.data<float>(), dst16, n);
  } else if (from == DType::f16 && to == DType::f32) {
    f16_to_f32(src16, out.data<float>(), n);
  } else {
    // bf16 <-> f16: through f32, which holds both exactly, so one rounding only.
    for (int64_t i = 0; i < n; ++i) {
      dst16[i] = from == DType::bf16 ? float_to_f16(bf16_to_float(src16[i])) : float_to_bf16(f16_to_float(src16[i]));
    }
  }
}

}  // namespace dtrain::cpu
