// Vectorised float math for the CPU backend's memory-bound ops.
//
// GCC does not vectorise std::exp/std::tanh loops without -ffast-math, nor
// branch-free clamps under its default -ftrapping-math, so the hot loops use
// AVX2+FMA intrinsics (the library is built for x86-64-v3) with a portable
// scalar fallback. Tails shorter than a vector go through the same vector
// code via a padded buffer, so every element of an op gets the same rounding.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DTRAIN_CPU_AVX2 1
#endif

namespace dtrain::cpu {

#ifdef DTRAIN_CPU_AVX2
constexpr int64_t kLanes = 8;

// exp(x), relative error about 2 ulp. 0 below -87, where exp leaves the normal
// range (softmax over masked -inf logits must give exactly 0); x clamped to 88
// above; NaN stays NaN. x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so
// n ln2 is exact), exp(r) by a degree-6 minimax polynomial, 2^n added to the
// exponent bits.
inline __m256 exp8(__m256 x) {
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);  // operand order keeps NaN
  x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
  return _mm256_andnot_ps(underflow, _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e)));
}

// 1 / d from the approximate reciprocal and one Newton step (about 1 ulp
// here, and much cheaper than a division on current cores).
inline __m256 reciprocal8(__m256 d) {
  const __m256 r = _mm256_rcp_ps(d);
  return _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0f)));
}

// Runs f(load, store) over [0, n) eight lanes at a time; the tail is padded
// with `pad` into a stack buffer so it takes the same code path.
template <typename F>
inline void for_each_lane_block(int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) f(i, kLanes);
  if (i < n) f(i, n - i);
}

// Loads min(count, 8) floats from p (count < 8 pads with `pad`).
inline __m256 load8(const float* p, int64_t count, float pad = 0.0f) {
  if (count == kLanes) return _mm256_loadu_ps(p);
  alignas(32) float buf[kLanes];
  for (int64_t j = 0; j < kLanes; ++j) buf[j] = j < count ? p[j] : pad;
  return _mm256_load_ps(buf);
}

inline void store8(float* p, __m256 v, int64_t count) {
  if (count == kLanes) {
    _mm256_storeu_ps(p, v);
    return;
  }
  alignas(32) float buf[kLanes];
  _mm256_store_ps(buf, v);
  for (int64_t j = 0; j < count; ++j) p[j] = buf[j];
}

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

}  // namespace dtrain::cpu
