// The stream-ordered caching allocator: its logic with a fake backend (runs
// everywhere), then the real CUDA allocator (skips without a GPU).
#include <catch2/catch.hpp>
#include <cstdlib>
#include <set>
#include <vector>

#include "core/block_cache.h"
#include "dtrain/allocator.h"
#include "dtrain/stream.h"
#include "dtrain/tensor.h"
#include "test_support.h"

#ifdef DTRAIN_WITH_CUDA
#include "core/cuda_caching_allocator.h"
#endif

using namespace dtrain;

namespace {

// Host memory standing in for the device; streams are opaque tags, events
// complete when the test says so.
class FakeBackend final : public BlockCacheBackend {
 public:
  FakeBackend() = default;
  FakeBackend(const FakeBackend&) = delete;
  FakeBackend& operator=(const FakeBackend&) = delete;
  ~FakeBackend() override {  // what the cache still holds when a test ends
    for (auto& [p, n] : sizes) std::free(p);
    for (auto& [e, done] : events) delete static_cast<int*>(e);
  }
  void* raw_alloc(size_t nbytes) override {
    if (in_use + nbytes > budget) return nullptr;
    in_use += nbytes;
    ++allocs;
    void* p = std::malloc(nbytes);
    sizes[p] = nbytes;
    return p;
  }
  void raw_free(void* ptr) override {
    in_use -= sizes[ptr];
    sizes.erase(ptr);
    ++frees;
    std::free(ptr);
  }
  void synchronize_device() override {
    ++syncs;
    for (auto& e : events) e.second = true;  // after a device sync every event has completed
  }
  void* current_stream() override { return stream; }
  void* record_event(void* s) override {
    auto* e = new int(0);
    events[e] = false;
    recorded_on.push_back(s);
    return e;
  }
  bool event_done(void* e) override { return events.at(e); }
  void destroy_event(void* e) override {
    events.erase(e);
    delete static_cast<int*>(e);
  }
  void complete_all_events() {
    for (auto& e : events) e.second = true;
  }

  size_t budget = size_t{1} << 30;
  size_t in_use = 0;
  int allocs = 0, frees = 0, syncs = 0;
  void* stream = reinterpret_cast<void*>(0x1);
  std::map<void*, size_t> sizes;
  std::map<void*, bool> events;
  std::vector<void*> recorded_on;
};

void* const kStreamA = reinterpret_cast<void*>(0x1);
void* const kStreamB = reinterpret_cast<void*>(0x2);

}  // namespace

TEST_CASE("BlockCache: size classes round up with bounded slack", "[allocator]") {
  CHECK(BlockCache::size_class(0) == 512);
  CHECK(BlockCache::size_class(1) == 512);
  CHECK(BlockCache::size_class(512) == 512);
  CHECK(BlockCache::size_class(513) == 1024);
  CHECK(BlockCache::size_class(size_t{1} << 20) == (size_t{1} << 20));
  for (size_t n : {size_t{1} << 20 | 1, size_t{3} << 20, size_t{100} << 20, (size_t{1} << 33) + 12345}) {
    const size_t c = BlockCache::size_class(n);
    CHECK(c >= n);
    CHECK(static_cast<double>(c - n) <= 0.125 * static_cast<double>(n));
  }
}

TEST_CASE("BlockCache: a freed block serves the next request of its class on its stream", "[allocator]") {
  FakeBackend backend;
  BlockCache cache(&backend);
  void* a = cache.allocate(1000);
  CHECK(backend.allocs == 1);
  CHECK(cache.stats().current_bytes == 1000);
  CHECK(cache.stats().reserved_bytes == 1024);
  cache.deallocate(a, 1000);
  CHECK(cache.stats().current_bytes == 0);
  CHECK(cache.cached_bytes() == 1024);
  void* b = cache.allocate(900);  // same class (1024): reused, no backend call
  CHECK(b == a);
  CHECK(backend.allocs == 1);
  // Another stream does not take blocks freed on stream A.
  cache.deallocate(b, 900);
  backend.stream = kStreamB;
  void* c = cache.allocate(1000);
  CHECK(c != a);
  CHECK(backend.allocs == 2);
  cache.deallocate(c, 1000);
  CHECK(cache.stats().current_allocations == 0);
  CHECK(cache.stats().total_allocations == 3);
}

TEST_CASE("BlockCache: a repeated step reaches the backend only in its first iteration", "[allocator]") {
  FakeBackend backend;
  BlockCache cache(&backend);
  const std::vector<size_t> step_sizes = {4096, 123457, 3 << 20, 77, 4096, 50 << 20, 1};
  for (int step = 0; step < 5; ++step) {
    std::vector<std::pair<void*, size_t>> live;
    live.reserve(step_sizes.size());
    for (size_t n : step_sizes) live.emplace_back(cache.allocate(n), n);
    for (auto& [p, n] : live) cache.deallocate(p, n);
    CHECK(backend.allocs == static_cast<int>(step_sizes.size()));
  }
  CHECK(cache.raw_allocations() == static_cast<int64_t>(step_sizes.size()));
  CHECK(cache.stats().peak_bytes > 0);
}

TEST_CASE("BlockCache: blocks used on another stream wait for that stream's event", "[allocator]") {
  FakeBackend backend;
  BlockCache cache(&backend);
  void* a = cache.allocate(2048);
  cache.record_stream(a, kStreamB);
  cache.record_stream(a, kStreamB);  // recorded once
  cache.record_stream(a, kStreamA);  // its own stream: nothing to wait for
  cache.deallocate(a, 2048);
  REQUIRE(backend.recorded_on.size() == 1);
  CHECK(backend.recorded_on[0] == kStreamB);
  void* b = cache.allocate(2048);  // event pending: a is not handed out
  CHECK(b != a);
  backend.complete_all_events();
  void* c = cache.allocate(2048);  // now it is
  CHECK(c == a);
  CHECK(backend.events.empty());
  cache.deallocate(b, 2048);
  cache.deallocate(c, 2048);
}

TEST_CASE("BlockCache: empty_cache returns cached blocks, out of memory retries once then throws", "[allocator]") {
  FakeBackend backend;
  backend.budget = 8192;
  BlockCache cache(&backend);
  void* a = cache.allocate(4096);
  void* b = cache.allocate(4096);
  cache.deallocate(a, 4096);
  cache.deallocate(b, 4096);
  CHECK(cache.stats().reserved_bytes == 8192);
  // A different class does not fit until the cached blocks go back.
  void* c = cache.allocate(6000);
  CHECK(backend.syncs == 1);
  CHECK(backend.frees == 2);
  CHECK(cache.stats().reserved_bytes == 6144);
  try {
    cache.allocate(4096);
    FAIL("expected an out-of-memory error");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("out of device memory allocating 4096 bytes"));
  }
  cache.deallocate(c, 6000);
  cache.empty_cache();
  CHECK(cache.stats().reserved_bytes == 0);
  CHECK(cache.cached_bytes() == 0);
  CHECK(backend.in_use == 0);
  // deallocate of a pointer the cache does not own is ignored, never throws.
  int local = 0;
  cache.deallocate(&local, 4);
  cache.deallocate(nullptr, 0);
}

TEST_CASE("CUDA caching allocator: steady state never calls cudaMalloc, stats, empty_cache", "[allocator][gpu]") {
  testing::require_gpu_or_skip();
#ifdef DTRAIN_WITH_CUDA
  const Device gpu = Device::cuda(0);
  auto step = [&] {
    Tensor a = Tensor::empty({1000, 37}, DType::f32, gpu);
    Tensor b = Tensor::empty({5 << 20}, DType::bf16, gpu);
    Tensor c = Tensor::zeros({3}, DType::i32, gpu);
    b.zero_();
  };
  step();
  const int64_t warm = cuda_allocator_raw_allocations(0);
  for (int i = 0; i < 10; ++i) step();
  CHECK(cuda_allocator_raw_allocations(0) == warm);
  const MemoryStats before = memory_stats(gpu);
  {
    Tensor t = Tensor::empty({1000}, DType::f32, gpu);
    CHECK(memory_stats(gpu).current_bytes - before.current_bytes == 4000);
    CHECK(memory_stats(gpu).current_allocations - before.current_allocations == 1);
  }
  CHECK(memory_stats(gpu).current_bytes == before.current_bytes);
  const int64_t reserved = memory_stats(gpu).reserved_bytes;
  CHECK(reserved >= before.current_bytes + (int64_t{5} << 21));  // step()'s blocks stay cached
  empty_cache(gpu);
  CHECK(memory_stats(gpu).reserved_bytes < reserved);
  CHECK(memory_stats(gpu).reserved_bytes >= memory_stats(gpu).current_bytes);
  CHECK(memory_stats(gpu).current_bytes == before.current_bytes);
  // A block freed on a side stream after record_stream is not reused on the
  // compute stream before the side stream's work is done; its data survives.
  Tensor src = Tensor::full({1 << 20}, 2.0, DType::f32, gpu);
  Tensor kept = Tensor::empty({1 << 20}, DType::f32, gpu);
  const Stream side = Stream::side(gpu);
  {
    side.wait(current_stream(gpu));
    StreamGuard guard(side);
    kept.copy_(src);
    record_stream(kept, side);
  }
  current_stream(gpu).wait(side);
  synchronize(gpu);
  CHECK(kept.to_vector()[12345] == 2.0f);
#endif
}
