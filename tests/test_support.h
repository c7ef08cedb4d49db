// Helpers shared by the test binaries.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "dtrain/ops.h"
#include "dtrain/tensor.h"

namespace dtrain::testing {

// Ends the current test as "skipped" (exit code 77, registered with ctest as
// SKIP_RETURN_CODE) after printing why. Catch2 v2 has no SKIP of its own.
[[noreturn]] inline void skip_test(const std::string& reason) {
  std::printf("SKIPPED: %s\n", reason.c_str());
  std::fflush(stdout);
  std::_Exit(77);
}

inline void require_gpu_or_skip() {
  if (!cuda_compiled()) skip_test("dtrain was built without CUDA");
  if (cuda_device_count() == 0) skip_test("no CUDA device is visible on this machine");
}

// CPU f32 tensor with values uniform in [lo, hi), deterministic for a seed.
inline Tensor random_tensor(const Shape& shape, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

// `t` converted to `dt` on its own device (ops::cast: round to nearest even).
inline Tensor cast_to(const Tensor& t, DType dt) {
  Tensor out = Tensor::empty(t.shape(), dt, t.device());
  ops::cast(out, t);
  return out;
}

}  // namespace dtrain::testing
