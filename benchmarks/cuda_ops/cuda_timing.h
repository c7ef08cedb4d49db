// How the CUDA benchmarks time work, in one place: bench_cuda_ops and the
// dev/ programs both call time_cuda_ms, so their figures are measured the
// same way (warm-up calls, then CUDA events around `iters` calls on the
// device's current stream; the mean per call). PyTorch's side
// (dev/attention_sdpa.py) times its calls the same way with torch.cuda.Event.
#pragma once

#include <functional>

#include "dtrain/device.h"
#include "dtrain/stream.h"

namespace dtrain::bench {

// Milliseconds per call of fn, after `warmup` untimed calls.
inline double time_cuda_ms(const Device& gpu, int warmup, int iters, const std::function<void()>& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  const Stream s = current_stream(gpu);
  Event start(true), stop(true);
  start.record(s);
  for (int i = 0; i < iters; ++i) fn();
  stop.record(s);
  stop.synchronize();
  return start.elapsed_ms(stop) / iters;
}

}  // namespace dtrain::bench
