// Small helpers for the CPU backend's OpenMP loops.
#pragma once

#include <omp.h>

#include <cstdint>

namespace dtrain::cpu {

// Below this many elements a loop runs on one thread: starting the team costs
// more than it saves.
constexpr int64_t kParallelGrain = 1 << 15;

// Splits [0, n) into one contiguous chunk per thread of the current team.
inline void thread_range(int64_t n, int64_t& begin, int64_t& end) {
  const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
  const int64_t chunk = (n + nt - 1) / nt;
  begin = t * chunk < n ? t * chunk : n;
  end = begin + chunk < n ? begin + chunk : n;
}

}  // namespace dtrain::cpu
