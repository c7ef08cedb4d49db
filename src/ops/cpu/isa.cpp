#include "ops/cpu/isa.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "dtrain/error.h"

namespace dtrain::cpu {
namespace {

// -1: not forced; otherwise an Isa value.
std::atomic<int> g_forced{-1};

// DTRAIN_CPU_ISA=avx2 pins the AVX2 kernels on every machine, so that a run
// computes the same bits on CPUs with and without AVX-512 (with the BLAS
// kernel pinned too, e.g. OPENBLAS_CORETYPE=Haswell). Unset or "best": the
// fastest the CPU allows.
bool env_wants_avx2() {
  static const int wants = [] {
    const char* v = std::getenv("DTRAIN_CPU_ISA");
    const std::string s = v == nullptr ? "" : v;
    if (s.empty() || s == "best" || s == "avx512") return 0;
    if (s == "avx2") return 1;
    return -1;
  }();
  DTRAIN_CHECK(wants >= 0, "DTRAIN_CPU_ISA='", std::getenv("DTRAIN_CPU_ISA"),
               "' is not a kernel set; use avx2 (the same kernels on every x86-64-v3 CPU), avx512 or best");
  return wants == 1;
}

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
  if (forced < 0 && env_wants_avx2()) return Isa::avx2;
  return avx512_available() ? Isa::avx512 : Isa::avx2;
}

void force_isa(Isa isa) {
  g_forced.store(static_cast<int>(isa), std::memory_order_relaxed);
}

}  // namespace dtrain::cpu
