#include "dtrain/nn/init.h"

#include <cmath>
#include <vector>

#include "dtrain/ops.h"

namespace dtrain::nn {

namespace {
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
// Uniform in (0, 1]: never 0, so log() below is finite.
double uniform01(uint64_t& state) {
  return (static_cast<double>(splitmix64(state) >> 11) + 1.0) * 0x1.0p-53;
}
}  // namespace

uint64_t stream_id(const std::string& name) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : name) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

void init_normal(Tensor& t, float mean, float std, uint64_t seed, uint64_t stream, int64_t first_element) {
  DTRAIN_CHECK(t.defined() && (t.dtype() == DType::f32 || t.dtype() == DType::bf16 || t.dtype() == DType::f16),
               "init_normal needs a defined f32, bf16 or f16 tensor, got ", t.describe());
  DTRAIN_CHECK(first_element >= 0, "init_normal: first_element must be >= 0, got ", first_element);
  const int64_t n = t.numel();
  std::vector<float> values(static_cast<size_t>(n));
  // Value k of the stream comes from draw pair k / 2 (cos for even k, sin for
  // odd k); pair j starts 2j draws into the stream, and each draw advances the
  // splitmix64 counter by one constant step, so any pair is reached directly.
  constexpr uint64_t kStep = 0x9e3779b97f4a7c15ull;
  constexpr double kTwoPi = 6.283185307179586476925;
  const uint64_t base = seed * kStep ^ stream;
  for (int64_t k = first_element; k < first_element + n;) {
    const uint64_t pair = static_cast<uint64_t>(k / 2);
    uint64_t state = base + 2 * pair * kStep;
    const double r = std::sqrt(-2.0 * std::log(uniform01(state)));
    const double theta = kTwoPi * uniform01(state);
    for (int64_t e = static_cast<int64_t>(2 * pair); e < static_cast<int64_t>(2 * pair) + 2; ++e) {
      if (e < first_element || e >= first_element + n) continue;
      const double z = (e % 2 == 0) ? std::cos(theta) : std::sin(theta);
      values[static_cast<size_t>(e - first_element)] = static_cast<float>(mean + std * r * z);
    }
    k = static_cast<int64_t>(2 * pair) + 2;
  }
  Tensor host = Tensor::from_blob(values.data(), t.shape(), DType::f32);
  if (t.dtype() == DType::f32) {
    t.copy_(host);
  } else {
    Tensor rounded = Tensor::empty(t.shape(), t.dtype(), Device::cpu());
    ops::cast(rounded, host);
    t.copy_(rounded);
  }
}

}  // namespace dtrain::nn
