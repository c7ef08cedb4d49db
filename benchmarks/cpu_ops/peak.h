// Baselines measured in the same run as the ops: an FMA-bound loop (the
// machine's f32 peak as far as a simple loop reaches it) and memcpy.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace dtrain::bench {

struct Peak {
  double gflops;
  std::string isa;  // "avx512" or "avx2" or "scalar"
};

// GFLOP/s of an FMA-only loop on `threads` threads, widest ISA the CPU has.
Peak fma_peak(int threads, double min_seconds);

// memcpy of a fixed-size buffer, split into one contiguous chunk per thread
// (bytes read + written = 2 * size per run).
class Memcpy {
 public:
  explicit Memcpy(size_t bytes);
  void run(int threads);

 private:
  std::vector<char> src_, dst_;
};

}  // namespace dtrain::bench
