#include "ops/cpu/isa.h"

#include <atomic>

namespace dtrain::cpu {
namespace {

// -1: not forced; otherwise an Isa value.
std::atomic<int> g_forced{-1};

}  // namespace

bool avx512_available() {
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
  static const bool available = __builtin_cpu_supports("avx512f") != 0;
  return available;
#else
  return false;  // kernels_avx512.cpp is built only with GCC on x86-64
#endif
}

Isa active_isa() {
  const int forced = g_forced.load(std::memory_order_relaxed);
  if (forced == static_cast<int>(Isa::avx2)) return Isa::avx2;
  return avx512_available() ? Isa::avx512 : Isa::avx2;
}

void force_isa(Isa isa) {
  g_forced.store(static_cast<int>(isa), std::memory_order_relaxed);
}

}  // namespace dtrain::cpu
