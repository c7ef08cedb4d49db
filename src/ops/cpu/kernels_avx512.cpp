// AVX-512 versions of the CPU backend's compute-bound elementwise kernels
// (GELU forward/backward, the exp pass of cross-entropy). The library is built
// for AVX2; this file alone targets AVX-512F through a pragma, and is only
// entered after a run-time CPU check (isa.h). It includes no headers with
// inline functions or templates after the pragma, so no AVX-512 code can be
// picked by the linker for code that runs on other CPUs.
// Same maths as vec_math.h / gelu.cpp / softmax_cross_entropy.cpp, sixteen lanes wide,
// with masked loads and stores for the tails.
#include <cstdint>

#include "ops/cpu/isa.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f")
// GCC 12's AVX-512 intrinsics start from deliberately undefined vectors
// (_mm512_undefined_ps), which its own -Wmaybe-uninitialized then flags.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace dtrain::cpu::avx512 {
namespace {

constexpr int64_t kLanes = 16;
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCoeff = 0.044715f;

inline __mmask16 tail_mask(int64_t count) {
  return static_cast<__mmask16>(count >= kLanes ? 0xffff : (1u << count) - 1u);
}

// Runs f(i, mask) over [0, n): full vectors with mask 0xffff (f uses plain
// loads and stores then; masked stores are slow on some cores), then the tail.
template <typename F>
inline void for_each_vector(int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) f(i, static_cast<__mmask16>(0xffff));
  if (i < n) f(i, tail_mask(n - i));
}

inline __m512 load(const float* p, __mmask16 m) {
  return m == 0xffff ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, p);
}

inline void store(float* p, __m512 v, __mmask16 m) {
  if (m == 0xffff) {
    _mm512_storeu_ps(p, v);
  } else {
    _mm512_mask_storeu_ps(p, m, v);
  }
}

// exp(x), about 2 ulp, 0 below -87, clamped to 88 above (see vec_math.h's exp8).
inline __m512 exp16(__m512 x) {
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_set1_ps(88.0f), x);
  x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_cvtps_epi32(n), 23);
  const __m512 result = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), e));
  return _mm512_mask_mov_ps(result, underflow, _mm512_setzero_ps());
}

inline __m512 reciprocal16(__m512 d) {
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

inline __m512 sigmoid_2u(__m512 x) {
  const __m512 a = _mm512_set1_ps(-2.0f * kSqrt2OverPi), b = _mm512_set1_ps(-2.0f * kSqrt2OverPi * kCoeff);
  const __m512 minus_2u = _mm512_mul_ps(x, _mm512_fmadd_ps(b, _mm512_mul_ps(x, x), a));
  return reciprocal16(_mm512_add_ps(_mm512_set1_ps(1.0f), exp16(minus_2u)));
}

}  // namespace

void gelu(const float* x, float* out, int64_t n) {
  for_each_vector(n, [&](int64_t i, __mmask16 m) {
    const __m512 xv = load(x + i, m);
    store(out + i, _mm512_mul_ps(xv, sigmoid_2u(xv)), m);
  });
}

void gelu_backward(const float* x, const float* dout, float* dx, int64_t n) {
  for_each_vector(n, [&](int64_t i, __mmask16 m) {
    const __m512 xv = load(x + i, m);
    const __m512 s = sigmoid_2u(xv);
    const __m512 du =
        _mm512_mul_ps(_mm512_set1_ps(kSqrt2OverPi),
                      _mm512_fmadd_ps(_mm512_set1_ps(3.0f * kCoeff), _mm512_mul_ps(xv, xv), _mm512_set1_ps(1.0f)));
    const __m512 two_x_s = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(2.0f), xv), s);
    const __m512 local = _mm512_fmadd_ps(_mm512_mul_ps(two_x_s, _mm512_sub_ps(_mm512_set1_ps(1.0f), s)), du, s);
    store(dx + i, _mm512_fmadd_ps(local, load(dout + i, m), load(dx + i, m)), m);
  });
}

float exp_shifted_sum(const float* x, float* out, int64_t n, float shift) {
  const __m512 vs = _mm512_set1_ps(shift);
  __m512 acc = _mm512_setzero_ps();
  for_each_vector(n, [&](int64_t i, __mmask16 m) {
    // Lanes past the end load 0 and are left out of the sum and the store.
    const __m512 e = exp16(_mm512_sub_ps(load(x + i, m), vs));
    acc = _mm512_mask_add_ps(acc, m, acc, e);
    if (out != nullptr) store(out + i, e, m);
  });
  alignas(64) float lanes[kLanes];  // (_mm512_reduce_add_ps trips -Wuninitialized in GCC 12)
  _mm512_store_ps(lanes, acc);
  float sum = 0.0f;
  for (float v : lanes) sum += v;
  return sum;
}

}  // namespace dtrain::cpu::avx512

#pragma GCC diagnostic pop
#pragma GCC pop_options
#else
// No AVX-512 kernels in this build: avx512_available() is false, so these never run.
namespace dtrain::cpu::avx512 {
void gelu(const float*, float*, int64_t) {}
void gelu_backward(const float*, const float*, float*, int64_t) {}
float exp_shifted_sum(const float*, float*, int64_t, float) {
  return 0.0f;
}
}  // namespace dtrain::cpu::avx512
#endif
