// The counters behind ops::fused_epilogue_counts() (see fused_epilogue.h).
#include "ops/fused_epilogue.h"

#include <atomic>
#include <cstdint>

#include "dtrain/ops.h"

namespace dtrain::ops {
namespace {

std::atomic<int64_t> fused_calls{0};
std::atomic<int64_t> composed_calls{0};

}  // namespace

void detail::count_fused_epilogue(bool fused) {
  (fused ? fused_calls : composed_calls).fetch_add(1, std::memory_order_relaxed);
}

FusedEpilogueCounts fused_epilogue_counts() {
  FusedEpilogueCounts counts;
  counts.fused = fused_calls.load(std::memory_order_relaxed);
  counts.composed = composed_calls.load(std::memory_order_relaxed);
  return counts;
}

}  // namespace dtrain::ops
