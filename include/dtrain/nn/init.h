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
// Fills t (f32, bf16 or f16, any device) with N(mean, std) values of stream
// (seed, stream): element i of t gets value first_element + i of the stream,
// drawn in f32 and rounded to t's dtype. The stream is counter-based, so a
// slice [a, b) of a tensor filled from first_element = a equals, bit for
// bit, the same range of the whole tensor filled from 0 (what lets each
// ZeRO-3 rank initialise only its shard).
void init_normal(Tensor& t, float mean, float std, uint64_t seed, uint64_t stream, int64_t first_element = 0);

}  // namespace dtrain::nn
