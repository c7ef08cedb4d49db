#include "core/block_cache.h"

#include "dtrain/error.h"

namespace dtrain {

size_t BlockCache::size_class(size_t nbytes) {
  constexpr size_t kSmallStep = 512;
  constexpr size_t kSmallLimit = size_t{1} << 20;
  if (nbytes <= kSmallLimit) return nbytes == 0 ? kSmallStep : (nbytes + kSmallStep - 1) / kSmallStep * kSmallStep;
  size_t power = kSmallLimit;
  while (power * 2 <= nbytes) power *= 2;
  const size_t step = power / 8;
  return (nbytes + step - 1) / step * step;
}

void* BlockCache::allocate(size_t nbytes) {
  const size_t size = size_class(nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* const stream = backend_->current_stream();
  if (!parked_.empty()) collect_parked_locked();
  void* ptr = nullptr;
  auto it = free_.find({stream, size});
  if (it != free_.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
    cached_bytes_ -= static_cast<int64_t>(size);
  } else {
    ptr = backend_->raw_alloc(size);
    if (ptr == nullptr) {
      // Out of memory: give back everything cached (after the device is idle,
      // since parked blocks may still be in use) and try once more.
      release_cached_locked();
      ptr = backend_->raw_alloc(size);
    }
    if (ptr == nullptr) {
      const MemoryStats s = tracker_.snapshot();
      DTRAIN_THROW("out of device memory allocating ", nbytes, " bytes (", s.current_bytes, " bytes in use by ",
                   s.current_allocations, " tensors, ", s.reserved_bytes,
                   " reserved); reduce the batch or model size, or shard more (ZeRO)");
    }
    ++raw_allocations_;
    tracker_.on_reserve(static_cast<int64_t>(size));
  }
  Block& block = live_[ptr];
  block.size = size;
  block.stream = stream;
  block.other_streams.clear();
  tracker_.on_allocate(nbytes);
  return ptr;
}

void BlockCache::deallocate(void* ptr, size_t nbytes) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end()) return;  // not ours: nothing to do (never throw here)
  Block block = std::move(it->second);
  live_.erase(it);
  tracker_.on_deallocate(nbytes);
  cached_bytes_ += static_cast<int64_t>(block.size);
  if (block.other_streams.empty()) {
    free_[{block.stream, block.size}].push_back(ptr);
    return;
  }
  Parked parked{ptr, std::move(block), {}};
  try {
    for (void* s : parked.block.other_streams) parked.events.push_back(backend_->record_event(s));
  } catch (...) {
    // Cannot order by events: wait for the device instead, then the block is free.
    try {
      backend_->synchronize_device();
    } catch (...) {
    }
    for (void* e : parked.events) backend_->destroy_event(e);
    free_[{parked.block.stream, parked.block.size}].push_back(ptr);
    return;
  }
  parked_.push_back(std::move(parked));
}

void BlockCache::record_stream(void* ptr, void* stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end() || it->second.stream == stream) return;
  for (void* s : it->second.other_streams) {
    if (s == stream) return;
  }
  it->second.other_streams.push_back(stream);
}

void BlockCache::collect_parked_locked() {
  for (size_t i = 0; i < parked_.size();) {
    Parked& p = parked_[i];
    bool done = true;
    for (void* e : p.events) done = done && backend_->event_done(e);
    if (!done) {
      ++i;
      continue;
    }
    for (void* e : p.events) backend_->destroy_event(e);
    free_[{p.block.stream, p.block.size}].push_back(p.ptr);
    parked_[i] = std::move(parked_.back());
    parked_.pop_back();
  }
}

void BlockCache::release_cached_locked() {
  backend_->synchronize_device();
  for (Parked& p : parked_) {
    for (void* e : p.events) backend_->destroy_event(e);
    free_[{p.block.stream, p.block.size}].push_back(p.ptr);
  }
  parked_.clear();
  for (auto& [key, ptrs] : free_) {
    for (void* ptr : ptrs) {
      backend_->raw_free(ptr);
      tracker_.on_reserve(-static_cast<int64_t>(key.second));
      cached_bytes_ -= static_cast<int64_t>(key.second);
    }
  }
  free_.clear();
}

void BlockCache::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_locked();
}

int64_t BlockCache::raw_allocations() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return raw_allocations_;
}

int64_t BlockCache::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cached_bytes_;
}

}  // namespace dtrain
