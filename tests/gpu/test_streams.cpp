// Streams, events, the check macro family and the CUDA backend's symbols.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

#include "dtrain/stream.h"
#include "dtrain/tensor.h"
#include "ops/backends.h"
#include "test_support.h"

#ifdef DTRAIN_WITH_CUDA
#include "comm/nccl/nccl_check.h"
#include "core/cuda_check.h"
#endif

using namespace dtrain;

TEST_CASE("streams: CPU streams and events are no-ops", "[stream]") {
  const Stream s = current_stream(Device::cpu());
  CHECK(s.native_handle() == nullptr);
  CHECK(s == Stream::compute(Device::cpu()));
  CHECK(s.query());
  s.synchronize();
  Event e;
  CHECK_FALSE(e.recorded());
  e.record(s);
  CHECK_FALSE(e.recorded());
  CHECK(e.query());
  e.synchronize();
  s.wait(e);
  { StreamGuard guard(s); }
  synchronize(Device::cpu());
  Event timed(true);
  CHECK_THROWS_WITH(timed.elapsed_ms(timed), Catch::Contains("recorded on a CUDA stream"));
  CHECK_THROWS_WITH(e.elapsed_ms(e), Catch::Contains("enable_timing"));
}

TEST_CASE("streams: a CUDA stream on a device that is not there is an Error naming it", "[stream]") {
  // cuda:N with N = the number of visible devices: cuda:0 on a machine
  // without a GPU, the first missing index on one with GPUs.
  const Device missing = Device::cuda(cuda_device_count());
  CHECK_THROWS_WITH(Stream::compute(missing), Catch::Contains(missing.str() + " requested"));
  CHECK_THROWS_AS(current_stream(missing), Error);
  CHECK_THROWS_AS(Stream::side(missing), Error);
}

#ifdef DTRAIN_WITH_CUDA
TEST_CASE("check macros: CUDA, cuBLAS and NCCL failures throw with statement, location and library text",
          "[stream][check]") {
  try {
    DTRAIN_CUDA_CHECK(cudaErrorInvalidValue);
    FAIL("no throw");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK_THAT(what, Catch::Contains("CUDA error cudaErrorInvalidValue"));
    CHECK_THAT(what, Catch::Contains("cudaErrorInvalidValue]"));  // the statement
    CHECK_THAT(what, Catch::Contains("test_streams.cpp:"));
  }
  try {
    DTRAIN_CUBLAS_CHECK(CUBLAS_STATUS_NOT_SUPPORTED);
    FAIL("no throw");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("cuBLAS error 15"));
    CHECK_THAT(e.what(), Catch::Contains("CUBLAS_STATUS_NOT_SUPPORTED"));
  }
  try {
    DTRAIN_NCCL_CHECK(ncclInvalidArgument);
    FAIL("no throw");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("NCCL error 4"));
    CHECK_THAT(e.what(), Catch::Contains("built against " + std::to_string(NCCL_MAJOR) + "."));
  }
  DTRAIN_CUDA_CHECK(cudaSuccess);  // success passes through
  int evaluated = 0;
  DTRAIN_CUBLAS_CHECK((++evaluated, CUBLAS_STATUS_SUCCESS));
  CHECK(evaluated == 1);  // the statement runs exactly once
}

TEST_CASE("CUDA backend: every op of backend_ops.inc is defined", "[stream][link]") {
  // Taking each address makes this binary fail to link if one is missing.
  const void* ops[] = {
      reinterpret_cast<const void*>(&cuda::matmul),
      reinterpret_cast<const void*>(&cuda::matmul_backward),
      reinterpret_cast<const void*>(&cuda::linear),
      reinterpret_cast<const void*>(&cuda::linear_backward),
      reinterpret_cast<const void*>(&cuda::layernorm),
      reinterpret_cast<const void*>(&cuda::layernorm_backward),
      reinterpret_cast<const void*>(&cuda::gelu),
      reinterpret_cast<const void*>(&cuda::gelu_backward),
      reinterpret_cast<const void*>(&cuda::attention),
      reinterpret_cast<const void*>(&cuda::attention_backward),
      reinterpret_cast<const void*>(&cuda::softmax_cross_entropy),
      reinterpret_cast<const void*>(&cuda::embedding),
      reinterpret_cast<const void*>(&cuda::embedding_backward),
      reinterpret_cast<const void*>(&cuda::add),
      reinterpret_cast<const void*>(&cuda::add_),
      reinterpret_cast<const void*>(&cuda::scale),
      reinterpret_cast<const void*>(&cuda::cast),
      reinterpret_cast<const void*>(&cuda::adamw_step),
      reinterpret_cast<const void*>(&cuda::global_norm_squared),
      reinterpret_cast<const void*>(&cuda::add_layernorm),
      reinterpret_cast<const void*>(&cuda::clip_coefficient),
      reinterpret_cast<const void*>(&cuda::linear_gelu),
      reinterpret_cast<const void*>(&cuda::matmul_dgelu_bgrad),
  };
  int distinct = 0;
  for (const void* a : ops) {
    int same = 0;
    for (const void* b : ops) same += a == b;
    distinct += same == 1;
  }
  CHECK(distinct == 23);
}
#endif

TEST_CASE("streams: compute and side streams, guards, events order work across streams", "[stream][gpu]") {
  testing::require_gpu_or_skip();
  const Device gpu = Device::cuda(0);
  const Stream compute = Stream::compute(gpu);
  CHECK(compute.native_handle() != nullptr);
  CHECK(current_stream(gpu) == compute);
  const Stream side = Stream::side(gpu);
  CHECK(side != compute);
  CHECK(Stream::side(gpu, true) != side);
  {
    StreamGuard guard(side);
    CHECK(current_stream(gpu) == side);
    {
      StreamGuard inner(compute);
      CHECK(current_stream(gpu) == compute);
    }
    CHECK(current_stream(gpu) == side);
  }
  CHECK(current_stream(gpu) == compute);

  // Producer on the compute stream, consumer on a side stream ordered by an event.
  const int64_t n = 1 << 22;
  Tensor a = Tensor::full({n}, 1.5, DType::f32, gpu);
  Tensor b = Tensor::empty({n}, DType::f32, gpu);
  Event produced;
  produced.record(compute);
  CHECK(produced.recorded());
  side.wait(produced);
  {
    StreamGuard guard(side);
    b.copy_(a);  // device-to-device: async on the side stream
    record_stream(b, side);
  }
  Event consumed(true), start(true);
  start.record(side);
  consumed.record(side);
  consumed.synchronize();
  CHECK(consumed.query());
  CHECK(start.elapsed_ms(consumed) >= 0.0f);
  compute.wait(side);
  CHECK(b.to_vector()[n - 1] == 1.5f);
  // zero_ and copies run on the current stream and see earlier work there.
  b.zero_();
  CHECK(b.to_vector()[0] == 0.0f);
  synchronize(gpu);
  CHECK(compute.query());
}
