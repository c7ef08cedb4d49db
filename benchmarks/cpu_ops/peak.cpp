// FMA peak loop: 12 independent accumulator chains (enough to cover the FMA
// latency x throughput of current x86 cores), each acc = acc * a + b. The
// constants keep values bounded; the sum at the end keeps the loop alive.
#include "peak.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

namespace dtrain::bench {
namespace {

constexpr int kChains = 12;

__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t iters) {
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j) * 0.001f);
  const __m512 a = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
  }
  __m512 s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm512_add_ps(s, acc[j]);
  float out[16];  // (_mm512_reduce_add_ps trips -Wuninitialized in GCC 12's header)
  _mm512_storeu_ps(out, s);
  float total = 0.0f;
  for (float v : out) total += v;
  return total;
}

__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iters) {
  __m256 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm256_set1_ps(static_cast<float>(j) * 0.001f);
  const __m256 a = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
    for (int j = 0; j < kChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
  }
  __m256 s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm256_add_ps(s, acc[j]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

volatile float g_sink = 0.0f;

}  // namespace

Peak fma_peak(int threads, double min_seconds) {
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const int lanes = avx512 ? 16 : (avx2 ? 8 : 0);
  if (lanes == 0) return {0.0, "scalar"};
  const int64_t iters = 1 << 22;
  double best = 0.0;
  const auto start = std::chrono::steady_clock::now();
  do {
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads)
    {
      const float r = avx512 ? fma_loop_avx512(iters) : fma_loop_avx2(iters);
#pragma omp atomic
      g_sink += r;
    }
    const double s = seconds_since(t0);
    const double flops = 2.0 * kChains * lanes * static_cast<double>(iters) * threads;
    if (flops / s > best) best = flops / s;
  } while (seconds_since(start) < min_seconds);
  return {best / 1e9, avx512 ? "avx512" : "avx2"};
}

Memcpy::Memcpy(size_t bytes) : src_(bytes, 1), dst_(bytes, 0) {}

void Memcpy::run(int threads) {
  const size_t bytes = src_.size();
#pragma omp parallel num_threads(threads)
  {
    const size_t nt = static_cast<size_t>(omp_get_num_threads()), me = static_cast<size_t>(omp_get_thread_num());
    const size_t chunk = (bytes + nt - 1) / nt, b0 = std::min(bytes, me * chunk), b1 = std::min(bytes, b0 + chunk);
    std::memcpy(dst_.data() + b0, src_.data() + b0, b1 - b0);
  }
}

}  // namespace dtrain::bench
