// Per-device allocators with memory statistics.
//
// Every tensor's storage comes from the allocator of its device. The CPU
// allocator returns 64-byte aligned blocks; the CUDA allocator (built with
// CUDA) caches freed blocks per stream so the training step never calls
// cudaMalloc once warm.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "dtrain/device.h"

namespace dtrain {

struct MemoryStats {
  int64_t current_bytes = 0;  // bytes held by live tensors
  int64_t peak_bytes = 0;     // maximum of current_bytes since start or reset_peak
  int64_t current_allocations = 0;
  int64_t total_allocations = 0;  // allocate() calls since start
  int64_t reserved_bytes = 0;     // bytes obtained from the system, cached blocks included
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Returns a block of at least nbytes (nbytes may be 0: a unique non-null pointer).
  virtual void* allocate(size_t nbytes) = 0;
  // Returns a block; nbytes must be what was asked of allocate.
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  virtual MemoryStats stats() const = 0;
  virtual void reset_peak() = 0;
  // Releases cached blocks back to the system (no-op where nothing is cached).
  virtual void empty_cache() {}
  // Caps the bytes held by live tensors (0: no cap); an allocation that would
  // pass it throws a dtrain::Error naming the limit. Allocators without a cap throw.
  virtual void set_limit(int64_t bytes);
  virtual int64_t limit() const { return 0; }
};

// Thread-safe counters shared by allocator implementations.
class MemoryStatsTracker {
 public:
  void on_allocate(size_t nbytes);
  void on_deallocate(size_t nbytes);
  void on_reserve(int64_t delta_bytes) { reserved_.fetch_add(delta_bytes); }
  void reset_peak() { peak_.store(current_.load()); }
  MemoryStats snapshot() const;

 private:
  std::atomic<int64_t> current_{0}, peak_{0}, live_{0}, total_{0}, reserved_{0};
};

// The allocator for a device (process-wide, never destroyed).
Allocator& allocator_for(const Device& device);

MemoryStats memory_stats(const Device& device);
void reset_peak_memory(const Device& device);
void empty_cache(const Device& device);
// The cap on a device's live tensor bytes (CPU only; 0 removes it), e.g. to
// show that a model too large for one rank still trains sharded.
void set_memory_limit(const Device& device, int64_t bytes);

}  // namespace dtrain
