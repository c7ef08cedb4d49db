#include "dtrain/allocator.h"

#include "core/device_allocators.h"
#include "dtrain/error.h"

namespace dtrain {

void MemoryStatsTracker::on_allocate(size_t nbytes) {
  const int64_t now = current_.fetch_add(static_cast<int64_t>(nbytes)) + static_cast<int64_t>(nbytes);
  int64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  live_.fetch_add(1);
  total_.fetch_add(1);
}

void MemoryStatsTracker::on_deallocate(size_t nbytes) {
  current_.fetch_sub(static_cast<int64_t>(nbytes));
  live_.fetch_sub(1);
}

MemoryStats MemoryStatsTracker::snapshot() const {
  MemoryStats s;
  s.current_bytes = current_.load();
  s.peak_bytes = peak_.load();
  s.current_allocations = live_.load();
  s.total_allocations = total_.load();
  s.reserved_bytes = reserved_.load();
  return s;
}

Allocator& allocator_for(const Device& device) {
  if (device.is_cpu()) return cpu_allocator();
  check_device_available(device);
#ifdef DTRAIN_WITH_CUDA
  return cuda_allocator(device.index());
#else
  DTRAIN_THROW("unreachable: CUDA device without CUDA build");
#endif
}

MemoryStats memory_stats(const Device& device) {
  return allocator_for(device).stats();
}
void reset_peak_memory(const Device& device) {
  allocator_for(device).reset_peak();
}
void empty_cache(const Device& device) {
  allocator_for(device).empty_cache();
}

void Allocator::set_limit(int64_t /*bytes*/) {
  DTRAIN_THROW("this device's allocator has no memory limit (only the CPU allocator has one)");
}

void set_memory_limit(const Device& device, int64_t bytes) {
  DTRAIN_CHECK(bytes >= 0, "set_memory_limit: the limit must be >= 0 bytes (0: none), got ", bytes);
  allocator_for(device).set_limit(bytes);
}

}  // namespace dtrain
