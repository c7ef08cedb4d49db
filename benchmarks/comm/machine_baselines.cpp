// The CPU FMA loop and the copy bandwidth (see machine_baselines.h); the
// cuBLAS GEMM is in cublas_gemm.cpp (built with CUDA only).
#include "machine_baselines.h"

#include <immintrin.h>

#include <atomic>
#include <thread>
#include <vector>

#include "bench_suite.h"
#include "dtrain/tensor.h"

namespace dtrain::bench {
namespace {

// 10 independent accumulators hide the FMA latency (4 cycles, 2 units).
__attribute__((target("avx2,fma"))) float fma_loop(int64_t iters) {
  __m256 acc[10];
  for (int k = 0; k < 10; ++k) acc[k] = _mm256_set1_ps(static_cast<float>(k));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (auto& x : acc) x = _mm256_fmadd_ps(x, a, b);
  __m256 sum = acc[0];
  for (int k = 1; k < 10; ++k) sum = _mm256_add_ps(sum, acc[k]);
  float out[8];
  _mm256_storeu_ps(out, sum);
  return out[0];
}

// The same with 16-wide AVX-512 registers (GEMM libraries use them where they exist).
__attribute__((target("avx512f"))) float fma_loop_512(int64_t iters) {
  __m512 acc[10];
  for (int k = 0; k < 10; ++k) acc[k] = _mm512_set1_ps(static_cast<float>(k));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (auto& x : acc) x = _mm512_fmadd_ps(x, a, b);
  __m512 sum = acc[0];
  for (int k = 1; k < 10; ++k) sum = _mm512_add_ps(sum, acc[k]);
  float out[16];  // not _mm512_reduce_add_ps: GCC 12 warns inside it
  _mm512_storeu_ps(out, sum);
  return out[0];
}

}  // namespace

double cpu_fma_gflops(int threads, double seconds) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
  const bool wide = __builtin_cpu_supports("avx512f");
  const int64_t iters = 1 << 20;  // 10 x 8 (16) x 2 x 2^20 = 168 (336) MFLOP per call
  const double flops_per_call = 10.0 * (wide ? 16 : 8) * 2 * static_cast<double>(iters);
  double best = 0;
  const auto start = Clock::now();
  do {
    std::atomic<float> sink{0};
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(threads));
    const auto t0 = Clock::now();
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&] { sink = sink + (wide ? fma_loop_512(iters) : fma_loop(iters)); });
    for (auto& th : pool) th.join();
    best = std::max(best, flops_per_call * threads / seconds_since(t0) / 1e9);
  } while (seconds_since(start) < seconds);
  return best;
}

double copy_gbps(const Device& device, size_t bytes, double seconds) {
  const int64_t n = static_cast<int64_t>(bytes / 4);
  Tensor a = Tensor::full({n}, 1.0, DType::f32, device);
  Tensor b = Tensor::zeros({n}, DType::f32, device);
  auto sync = [&] { (void)b.narrow(0, 1).to(Device::cpu()); };
  b.copy_(a);  // touch every page once
  sync();
  const TimedCalls t = time_calls(
      [&] {
        b.copy_(a);
        sync();
      },
      50, seconds);
  return 2.0 * static_cast<double>(n) * 4 / t.best() / 1e9;
}

}  // namespace dtrain::bench
