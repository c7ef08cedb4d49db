// The CUDA device allocator (first version: direct cudaMalloc/cudaFree with
// statistics; see docs/ARCHITECTURE.md for the caching allocator plan).
#ifdef DTRAIN_WITH_CUDA

#include <memory>
#include <mutex>
#include <vector>

#include "core/cuda_check.h"
#include "core/device_allocators.h"

namespace dtrain {
namespace {

class CudaAllocator final : public Allocator {
 public:
  explicit CudaAllocator(int device) : device_(device) {}
  void* allocate(size_t nbytes) override {
    DTRAIN_CUDA_CHECK(cudaSetDevice(device_));
    void* ptr = nullptr;
    DTRAIN_CUDA_CHECK(cudaMalloc(&ptr, nbytes == 0 ? 1 : nbytes));
    tracker_.on_allocate(nbytes);
    tracker_.on_reserve(static_cast<int64_t>(nbytes));
    return ptr;
  }
  void deallocate(void* ptr, size_t nbytes) override {
    if (ptr == nullptr) return;
    (void)cudaSetDevice(device_);
    (void)cudaFree(ptr);  // never throw from a destructor path
    tracker_.on_deallocate(nbytes);
    tracker_.on_reserve(-static_cast<int64_t>(nbytes));
  }
  MemoryStats stats() const override { return tracker_.snapshot(); }
  void reset_peak() override { tracker_.reset_peak(); }

 private:
  int device_;
  MemoryStatsTracker tracker_;
};

}  // namespace

Allocator& cuda_allocator(int device_index) {
  static std::mutex mutex;
  static auto* allocators = new std::vector<std::unique_ptr<CudaAllocator>>();
  std::lock_guard<std::mutex> lock(mutex);
  if (allocators->size() <= static_cast<size_t>(device_index)) allocators->resize(device_index + 1);
  auto& slot = (*allocators)[device_index];
  if (!slot) slot = std::make_unique<CudaAllocator>(device_index);
  return *slot;
}

}  // namespace dtrain

#endif  // DTRAIN_WITH_CUDA
