// Baselines measured in the same run as the ops: an FMA-bound loop (the
// machine's f32 peak as far as a simple loop reaches it) and memcpy.
#pragma once

#include <cstddef>
#include <string>

namespace dtrain::bench {

struct Peak {
  double gflops;
  std::string isa;  // "avx512" or "avx2" or "scalar"
};

// GFLOP/s of an FMA-only loop on `threads` threads, widest ISA the CPU has.
Peak fma_peak(int threads, double min_seconds);

// Bytes read + written per second by memcpy of `bytes` bytes split over `threads`.
double memcpy_gbps(size_t bytes, int threads, double min_seconds);

}  // namespace dtrain::bench
