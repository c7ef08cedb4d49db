#include <catch2/catch.hpp>

#include "dtrain/allocator.h"
#include "dtrain/tensor.h"
#include "test_support.h"

using namespace dtrain;

#ifdef DTRAIN_WITH_CUDA
namespace dtrain::cuda {
void probe_fill_f32(float* out, float value, long n);
}
#endif

TEST_CASE("CUDA: kernel launch, host/device copies and allocator stats", "[cuda][gpu]") {
  testing::require_gpu_or_skip();
#ifdef DTRAIN_WITH_CUDA
  const Device gpu = Device::cuda(0);
  const MemoryStats before = memory_stats(gpu);
  Tensor d = Tensor::empty({1000}, DType::f32, gpu);
  CHECK(memory_stats(gpu).current_bytes - before.current_bytes == 4000);
  cuda::probe_fill_f32(d.data<float>(), 3.5f, d.numel());
  const Tensor h = d.to(Device::cpu());
  for (int64_t i = 0; i < h.numel(); ++i) REQUIRE(h.item(i) == 3.5);
  Tensor back = Tensor::from_vector({1, 2, 3}, {3}).to(gpu);
  CHECK(back.to_vector() == std::vector<float>{1, 2, 3});
#endif
}
