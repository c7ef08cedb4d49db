// The host allocator: 64-byte aligned (one cache line, one AVX-512 vector).
#include <cstdlib>
#include <new>

#include "core/device_allocators.h"
#include "dtrain/error.h"

namespace dtrain {
namespace {

constexpr size_t kCpuAlignment = 64;

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    const int64_t cap = limit_.load();
    if (cap > 0) {
      const int64_t held = tracker_.snapshot().current_bytes;
      DTRAIN_CHECK(held + static_cast<int64_t>(nbytes) <= cap, "CPU memory limit of ", cap, " bytes exceeded: ", held,
                   " bytes held and ", nbytes,
                   " more requested (the limit was set with set_memory_limit; raise it, or shard the model: "
                   "ZeRO-3 with a model built under nn::DeferredInit)");
    }
    const size_t rounded = (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    void* ptr = std::aligned_alloc(kCpuAlignment, rounded == 0 ? kCpuAlignment : rounded);
    DTRAIN_CHECK(ptr != nullptr, "out of host memory allocating ", nbytes, " bytes; reduce the batch or model size");
    tracker_.on_allocate(nbytes);
    tracker_.on_reserve(static_cast<int64_t>(nbytes));
    return ptr;
  }
  void deallocate(void* ptr, size_t nbytes) override {
    if (ptr == nullptr) return;
    std::free(ptr);
    tracker_.on_deallocate(nbytes);
    tracker_.on_reserve(-static_cast<int64_t>(nbytes));
  }
  MemoryStats stats() const override { return tracker_.snapshot(); }
  void reset_peak() override { tracker_.reset_peak(); }
  void set_limit(int64_t bytes) override { limit_.store(bytes); }
  int64_t limit() const override { return limit_.load(); }

 private:
  MemoryStatsTracker tracker_;
  std::atomic<int64_t> limit_{0};
};

}  // namespace

Allocator& cpu_allocator() {
  static auto* allocator = new CpuAllocator();  // leaked on purpose: outlives static tensors
  return *allocator;
}

}  // namespace dtrain
