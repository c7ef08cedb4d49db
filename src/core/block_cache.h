// Internal: the stream-ordered caching logic behind the CUDA allocator, kept
// apart from CUDA so that it is tested on machines without a GPU (with a fake
// backend, tests/gpu/test_caching_allocator.cpp).
//
// Design:
//  - Requests are rounded to a size class: multiples of 512 B below 1 MiB,
//    then 8 classes per power of two (at most 12.5% slack). A freed block goes
//    to the free list of (its stream, its class) and serves the next request
//    of that class on that stream at once: work on one stream runs in order,
//    so the new owner's kernels start after the old owner's have finished.
//    A training step allocates the same sizes every step, so once warm it
//    never reaches the backend (cudaMalloc).
//  - A block used on other streams (record_stream) is parked at free time
//    with an event per such stream, and joins its free list once all events
//    have completed (checked, never waited for, on later allocations).
//  - When the backend is out of memory, the cache waits for the device,
//    returns every cached block and tries once more before throwing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dtrain/allocator.h"

namespace dtrain {

class BlockCacheBackend {
 public:
  virtual ~BlockCacheBackend() = default;
  virtual void* raw_alloc(size_t nbytes) = 0;  // nullptr when out of memory
  virtual void raw_free(void* ptr) = 0;
  virtual void synchronize_device() = 0;         // all queued work done
  virtual void* current_stream() = 0;            // the stream new blocks belong to
  virtual void* record_event(void* stream) = 0;  // an event after the work queued on stream so far
  virtual bool event_done(void* event) = 0;
  virtual void destroy_event(void* event) = 0;
};

class BlockCache {
 public:
  explicit BlockCache(BlockCacheBackend* backend) : backend_(backend) {}
  ~BlockCache() = default;  // process-lifetime objects: cached blocks are left to the driver at exit

  void* allocate(size_t nbytes);
  // Never throws (runs in destructors).
  void deallocate(void* ptr, size_t nbytes);
  void record_stream(void* ptr, void* stream);
  void empty_cache();
  MemoryStats stats() const { return tracker_.snapshot(); }
  void reset_peak() { tracker_.reset_peak(); }
  // Number of backend allocations so far (a warm training step adds none).
  int64_t raw_allocations() const;
  // Cached (free or parked) bytes.
  int64_t cached_bytes() const;

  static size_t size_class(size_t nbytes);

 private:
  struct Block {
    size_t size = 0;  // its size class
    void* stream = nullptr;
    std::vector<void*> other_streams;  // from record_stream
  };
  struct Parked {
    void* ptr;
    Block block;
    std::vector<void*> events;
  };
  void collect_parked_locked();
  void release_cached_locked();

  BlockCacheBackend* backend_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, Block> live_;
  std::map<std::pair<void*, size_t>, std::vector<void*>> free_;  // (stream, class) -> blocks
  std::vector<Parked> parked_;
  int64_t raw_allocations_ = 0;
  int64_t cached_bytes_ = 0;
  MemoryStatsTracker tracker_;
};

}  // namespace dtrain
