// Helpers shared by the test binaries.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

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

// max |a - b| / max(1, max |b|): the normalised error used across the suite.
inline double normalized_error(const Tensor& a, const Tensor& b) {
  const auto va = a.to_vector();
  const auto vb = b.to_vector();
  double max_diff = 0.0, max_ref = 1.0;
  for (size_t i = 0; i < va.size() && i < vb.size(); ++i) {
    max_diff = std::fmax(max_diff, std::fabs(static_cast<double>(va[i]) - vb[i]));
    max_ref = std::fmax(max_ref, std::fabs(static_cast<double>(vb[i])));
  }
  return va.size() == vb.size() ? max_diff / max_ref : INFINITY;
}

}  // namespace dtrain::testing
