// Internal: the parts of the CUDA caching allocator that other core files use.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dtrain {

// See record_stream in dtrain/stream.h. `ptr` is a block base returned by the
// device's allocator (anything else is ignored: memory the allocator does not own).
void cuda_allocator_record_stream(int device_index, void* ptr, void* stream);

// Sets the device for a scope and restores the previous one (CUDA builds only).
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int device_index);
  ~CudaDeviceGuard();
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace dtrain

namespace dtrain {
// How many times the device's allocator has called cudaMalloc (tests and
// benchmarks check that a warm step adds none).
int64_t cuda_allocator_raw_allocations(int device_index);
}  // namespace dtrain
