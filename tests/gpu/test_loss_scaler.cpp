// Dynamic loss scaler: the schedule (skip and back off on overflow, grow after
// N good steps, clamps) and inf/nan detection on CPU and, with a GPU, CUDA.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "dtrain/optim/loss_scaler.h"
#include "test_support.h"

using namespace dtrain;

TEST_CASE("loss scaler: overflow skips the step and backs off, good steps grow the scale", "[loss_scaler]") {
  LossScalerConfig config;
  config.init_scale = 1024.0f;
  config.growth_interval = 3;
  config.min_scale = 256.0f;
  config.max_scale = 4096.0f;
  DynamicLossScaler scaler(config);
  CHECK(scaler.scale() == 1024.0f);
  CHECK(scaler.inv_scale() == 1.0f / 1024.0f);
  CHECK_FALSE(scaler.update(false));
  CHECK(scaler.scale() == 512.0f);
  CHECK(scaler.skipped_steps() == 1);
  CHECK(scaler.update(true));
  CHECK(scaler.update(true));
  CHECK(scaler.good_steps() == 2);
  CHECK(scaler.scale() == 512.0f);
  CHECK(scaler.update(true));  // third good step in a row: grow
  CHECK(scaler.scale() == 1024.0f);
  CHECK(scaler.good_steps() == 0);
  // An overflow resets the run of good steps.
  CHECK(scaler.update(true));
  CHECK(scaler.update(true));
  CHECK_FALSE(scaler.update(false));
  CHECK(scaler.scale() == 512.0f);
  CHECK(scaler.good_steps() == 0);
  // Clamped at both ends.
  for (int i = 0; i < 10; ++i) scaler.update(false);
  CHECK(scaler.scale() == 256.0f);
  for (int i = 0; i < 30; ++i) scaler.update(true);
  CHECK(scaler.scale() == 4096.0f);
  CHECK(scaler.skipped_steps() == 12);
}

TEST_CASE("loss scaler: bad configurations are rejected", "[loss_scaler]") {
  LossScalerConfig c;
  c.init_scale = 0.0f;
  CHECK_THROWS_WITH(DynamicLossScaler(c), Catch::Contains("init_scale"));
  c = {};
  c.backoff_factor = 1.0f;
  CHECK_THROWS_WITH(DynamicLossScaler(c), Catch::Contains("backoff_factor"));
  c = {};
  c.growth_interval = 0;
  CHECK_THROWS_WITH(DynamicLossScaler(c), Catch::Contains("growth_interval"));
  c = {};
  c.min_scale = 8.0f;
  c.max_scale = 4.0f;
  CHECK_THROWS_WITH(DynamicLossScaler(c), Catch::Contains("min_scale"));
}

TEST_CASE("loss scaler: inf and nan are found in f32, bf16 and f16 CPU tensors", "[loss_scaler]") {
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    Tensor a = Tensor::full({1000}, 0.5, dt);
    Tensor b = Tensor::full({3, 7}, -60000.0, dt);  // large but finite in every format
    CHECK(DynamicLossScaler::all_finite({a, b, Tensor()}));
    a.set_item(999, std::numeric_limits<double>::infinity());
    CHECK_FALSE(DynamicLossScaler::all_finite({b, a}));
    a.set_item(999, 1.0);
    b.set_item(0, -std::numeric_limits<double>::infinity());
    CHECK_FALSE(DynamicLossScaler::all_finite({a, b}));
    b.set_item(0, std::nan(""));
    CHECK_FALSE(DynamicLossScaler::all_finite({a, b}));
  }
  // f16 overflows where f32 does not: 1e5 becomes inf.
  Tensor h = Tensor::full({4}, 1e5, DType::f16);
  CHECK_FALSE(DynamicLossScaler::all_finite({h}));
  CHECK(DynamicLossScaler::all_finite({}));
  CHECK_THROWS_WITH(DynamicLossScaler::all_finite({Tensor::zeros({2}, DType::i32)}), Catch::Contains("not a floating"));
  // A scaler driven by real gradients.
  DynamicLossScaler scaler;
  Tensor g = Tensor::full({10}, 1.0, DType::f16);
  CHECK(scaler.check_and_update({g}));
  g.set_item(3, std::nan(""));
  CHECK_FALSE(scaler.check_and_update({g}));
  CHECK(scaler.scale() == 32768.0f);
}

TEST_CASE("loss scaler: inf and nan are found in CUDA tensors", "[loss_scaler][gpu]") {
  testing::require_gpu_or_skip();
  const Device gpu = Device::cuda(0);
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    Tensor host = Tensor::full({70001}, 0.25, dt);
    Tensor small = Tensor::full({5}, 1.0, dt).to(gpu);
    CHECK(DynamicLossScaler::all_finite({host.to(gpu), small}));
    host.set_item(70000, std::numeric_limits<double>::infinity());  // last element of the last block
    CHECK_FALSE(DynamicLossScaler::all_finite({small, host.to(gpu)}));
    host.set_item(70000, 0.0);
    host.set_item(4096, std::nan(""));  // first element of the second block
    CHECK_FALSE(DynamicLossScaler::all_finite({host.to(gpu), small}));
    // Mixed CPU and CUDA lists.
    host.set_item(4096, 1.0);
    CHECK(DynamicLossScaler::all_finite({host, host.to(gpu)}));
  }
}

TEST_CASE("loss scaler: a restored state continues exactly, impossible states are refused", "[loss_scaler]") {
  LossScalerConfig config;
  config.init_scale = 1024.0f;
  config.growth_interval = 3;
  DynamicLossScaler a(config);
  a.update(false);
  a.update(true);
  a.update(true);
  DynamicLossScaler b(config);
  b.restore(a.state());
  CHECK(b.scale() == 512.0f);
  CHECK(b.good_steps() == 2);
  CHECK(b.skipped_steps() == 1);
  for (bool finite : {true, true, false, true, true, true}) {
    CHECK(a.update(finite) == b.update(finite));
    CHECK(a.scale() == b.scale());
    CHECK(a.good_steps() == b.good_steps());
  }
  CHECK_THROWS_WITH(b.restore({std::numeric_limits<float>::infinity(), 0, 0}), Catch::Contains("outside"));
  CHECK_THROWS_WITH(b.restore({1024.0f, 3, 0}), Catch::Contains("growth_interval 3"));
  CHECK_THROWS_WITH(b.restore({1024.0f, 0, -1}), Catch::Contains("impossible"));
}
