// Which vector kernels the CPU backend runs: AVX-512 ones where the CPU has
// AVX-512F (chosen at run time; the library itself is built for AVX2), the
// AVX2 ones otherwise. Tests force each in turn so both paths are checked on
// a machine that has both. DTRAIN_CPU_ISA=avx2 pins the AVX2 kernels (the same
// results on every CPU; isa.cpp).
#pragma once

#include <cstdint>

namespace dtrain::cpu {

enum class Isa { avx2, avx512 };

// The ISA in use: the forced one if set, else the best the CPU and build allow.
Isa active_isa();
// Tests only: run the given ISA's kernels from now on (avx512 is ignored where
// unsupported). Not thread-safe with respect to running ops.
void force_isa(Isa isa);
// True if this build has AVX-512 kernels and the CPU can run them.
bool avx512_available();

// AVX-512 kernels (src/ops/cpu/kernels_avx512.cpp); call only when active_isa() == Isa::avx512.
namespace avx512 {
void gelu(const float* x, float* out, int64_t n);
void gelu_backward(const float* x, const float* dout, float* dx, int64_t n);
// out[i] = exp(x[i] - shift) (out may be null or x itself); returns the sum.
float exp_shifted_sum(const float* x, float* out, int64_t n, float shift);
}  // namespace avx512

}  // namespace dtrain::cpu
