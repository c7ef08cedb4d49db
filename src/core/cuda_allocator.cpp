// The CUDA device allocator: a stream-ordered caching allocator (the logic is
// in core/block_cache.h; this file connects it to the CUDA runtime).
#ifdef DTRAIN_WITH_CUDA

#include <memory>
#include <mutex>
#include <vector>

#include "core/block_cache.h"
#include "core/cuda_caching_allocator.h"
#include "core/cuda_check.h"
#include "core/device_allocators.h"
#include "dtrain/stream.h"

namespace dtrain {

CudaDeviceGuard::CudaDeviceGuard(int device_index) {
  DTRAIN_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device_index) DTRAIN_CUDA_CHECK(cudaSetDevice(device_index));
}
CudaDeviceGuard::~CudaDeviceGuard() {
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_) (void)cudaSetDevice(previous_);
}

namespace {

class CudaBackend final : public BlockCacheBackend {
 public:
  explicit CudaBackend(int device) : device_(device) {}
  void* raw_alloc(size_t nbytes) override {
    CudaDeviceGuard guard(device_);
    void* ptr = nullptr;
    const cudaError_t status = cudaMalloc(&ptr, nbytes);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return nullptr;
    }
    DTRAIN_CUDA_CHECK(status);
    return ptr;
  }
  void raw_free(void* ptr) override {
    CudaDeviceGuard guard(device_);
    DTRAIN_CUDA_CHECK(cudaFree(ptr));
  }
  void synchronize_device() override {
    CudaDeviceGuard guard(device_);
    DTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  }
  void* current_stream() override { return dtrain::current_stream(Device::cuda(device_)).native_handle(); }
  void* record_event(void* stream) override {
    CudaDeviceGuard guard(device_);
    cudaEvent_t event = nullptr;
    DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    const cudaError_t status = cudaEventRecord(event, static_cast<cudaStream_t>(stream));
    if (status != cudaSuccess) (void)cudaEventDestroy(event);
    DTRAIN_CUDA_CHECK(status);
    return event;
  }
  bool event_done(void* event) override {
    const cudaError_t status = cudaEventQuery(static_cast<cudaEvent_t>(event));
    if (status == cudaSuccess) return true;
    (void)cudaGetLastError();
    // Not ready, or an error (which the next checked call reports): keep waiting.
    return false;
  }
  void destroy_event(void* event) override { (void)cudaEventDestroy(static_cast<cudaEvent_t>(event)); }

 private:
  int device_;
};

class CudaAllocator final : public Allocator {
 public:
  explicit CudaAllocator(int device) : backend_(device), cache_(&backend_) {}
  void* allocate(size_t nbytes) override { return cache_.allocate(nbytes); }
  void deallocate(void* ptr, size_t nbytes) override { cache_.deallocate(ptr, nbytes); }
  MemoryStats stats() const override { return cache_.stats(); }
  void reset_peak() override { cache_.reset_peak(); }
  void empty_cache() override { cache_.empty_cache(); }
  BlockCache& cache() { return cache_; }

 private:
  CudaBackend backend_;
  BlockCache cache_;
};

CudaAllocator& cuda_allocator_impl(int device_index) {
  static std::mutex mutex;
  // Leaked on purpose: tensors in static storage may be freed after main returns.
  static auto* allocators = new std::vector<std::unique_ptr<CudaAllocator>>();
  std::lock_guard<std::mutex> lock(mutex);
  if (allocators->size() <= static_cast<size_t>(device_index)) allocators->resize(device_index + 1);
  auto& slot = (*allocators)[device_index];
  if (!slot) slot = std::make_unique<CudaAllocator>(device_index);
  return *slot;
}

}  // namespace

Allocator& cuda_allocator(int device_index) {
  return cuda_allocator_impl(device_index);
}

void cuda_allocator_record_stream(int device_index, void* ptr, void* stream) {
  cuda_allocator_impl(device_index).cache().record_stream(ptr, stream);
}

int64_t cuda_allocator_raw_allocations(int device_index) {
  return cuda_allocator_impl(device_index).cache().raw_allocations();
}

}  // namespace dtrain

#endif  // DTRAIN_WITH_CUDA
