#include <catch2/catch.hpp>

#include "dtrain/allocator.h"
#include "dtrain/tensor.h"

using namespace dtrain;

TEST_CASE("CPU allocator tracks current, peak and counts", "[allocator]") {
  const MemoryStats before = memory_stats(Device::cpu());
  reset_peak_memory(Device::cpu());
  {
    Tensor a = Tensor::empty({1000});             // 4000 bytes
    Tensor b = Tensor::empty({500}, DType::u16);  // 1000 bytes
    const MemoryStats during = memory_stats(Device::cpu());
    CHECK(during.current_bytes - before.current_bytes == 5000);
    CHECK(during.current_allocations - before.current_allocations == 2);
    CHECK(during.total_allocations - before.total_allocations == 2);
    CHECK(during.peak_bytes >= during.current_bytes);
  }
  const MemoryStats after = memory_stats(Device::cpu());
  CHECK(after.current_bytes == before.current_bytes);
  CHECK(after.peak_bytes >= before.current_bytes + 5000);
  reset_peak_memory(Device::cpu());
  CHECK(memory_stats(Device::cpu()).peak_bytes == after.current_bytes);
}
