#include "dtrain/nn/init.h"

#include <cmath>
#include <vector>

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

void init_normal(Tensor& t, float mean, float std, uint64_t seed, uint64_t stream) {
  DTRAIN_CHECK(t.defined() && t.dtype() == DType::f32, "init_normal needs a defined f32 tensor, got ", t.describe());
  std::vector<float> values(static_cast<size_t>(t.numel()));
  uint64_t state = seed * 0x9e3779b97f4a7c15ull ^ stream;
  constexpr double kTwoPi = 6.283185307179586476925;
  for (size_t i = 0; i < values.size(); i += 2) {
    const double r = std::sqrt(-2.0 * std::log(uniform01(state)));
    const double theta = kTwoPi * uniform01(state);
    values[i] = static_cast<float>(mean + std * r * std::cos(theta));
    if (i + 1 < values.size()) values[i + 1] = static_cast<float>(mean + std * r * std::sin(theta));
  }
  Tensor host = Tensor::from_blob(values.data(), t.shape(), DType::f32);
  t.copy_(host);
}

}  // namespace dtrain::nn
