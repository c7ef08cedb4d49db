// Deterministic parameter initialisation.
//
// Every draw comes from a counter-based stream (splitmix64 + Box-Muller), so
// the same (seed, stream) gives the same values on every platform and
// compiler, unlike std::normal_distribution.
#pragma once

#include <cstdint>
#include <string>

#include "dtrain/tensor.h"

namespace dtrain::nn {

// A 64-bit stream id for a name ("blocks.0.attn.qkv.weight"), FNV-1a.
uint64_t stream_id(const std::string& name);
// Fills t (f32, any device) with N(mean, std) values of stream (seed, stream).
void init_normal(Tensor& t, float mean, float std, uint64_t seed, uint64_t stream);

}  // namespace dtrain::nn
