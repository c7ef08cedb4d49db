#include <catch2/catch.hpp>

#include "dtrain/tensor.h"

using namespace dtrain;

TEST_CASE("factories set shape, dtype and contents", "[tensor]") {
  Tensor z = Tensor::zeros({2, 3});
  CHECK(z.numel() == 6);
  CHECK(z.nbytes() == 24);
  CHECK(z.dim() == 2);
  CHECK(z.size(-1) == 3);
  for (int64_t i = 0; i < 6; ++i) CHECK(z.item(i) == 0.0);

  Tensor f = Tensor::full({4}, 2.5, DType::bf16);
  for (int64_t i = 0; i < 4; ++i) CHECK(f.item(i) == 2.5);
  CHECK(f.describe() == "bf16[4] on cpu");

  Tensor s = Tensor::empty({}, DType::i64);
  CHECK(s.numel() == 1);
  CHECK(Tensor::empty({0, 5}).numel() == 0);
  CHECK_FALSE(Tensor().defined());
  CHECK_THROWS_WITH(Tensor::empty({2, -1}), Catch::Contains("negative dimension"));
  CHECK_THROWS_WITH(z.size(2), Catch::Contains("out of range"));
}

TEST_CASE("CPU storage is 64-byte aligned", "[tensor]") {
  for (int64_t n : {1, 3, 17, 1000}) {
    Tensor t = Tensor::empty({n}, DType::u8);
    CHECK(reinterpret_cast<uintptr_t>(t.data_ptr()) % 64 == 0);
  }
}

TEST_CASE("narrow and reshape are views sharing storage", "[tensor]") {
  Tensor t = Tensor::from_vector({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {4, 3});
  Tensor rows = t.narrow(1, 2);
  CHECK(rows.shape() == Shape{2, 3});
  CHECK(rows.item(0) == 3.0);
  CHECK(rows.shares_storage(t));
  rows.set_item(0, 42.0);
  CHECK(t.item(3) == 42.0);

  Tensor r = t.reshape({2, -1});
  CHECK(r.shape() == Shape{2, 6});
  CHECK(r.item(3) == 42.0);
  CHECK(t.flatten().shape() == Shape{12});
  CHECK_THROWS_WITH(t.reshape({5, -1}), Catch::Contains("cannot infer"));
  CHECK_THROWS_WITH(t.reshape({5, 2}), Catch::Contains("changes the number of elements"));
  CHECK_THROWS_WITH(t.reshape({-1, -1}), Catch::Contains("only one dimension"));
  CHECK_THROWS_WITH(t.narrow(3, 2), Catch::Contains("out of range"));
  CHECK_THROWS_WITH(t.narrow(-1, 1), Catch::Contains("out of range"));
  CHECK(t.narrow(4, 0).numel() == 0);
}

TEST_CASE("overlap detection follows byte ranges", "[tensor]") {
  Tensor t = Tensor::zeros({10, 4});
  CHECK(t.narrow(0, 5).overlaps(t.narrow(4, 2)));
  CHECK_FALSE(t.narrow(0, 5).overlaps(t.narrow(5, 5)));
  CHECK_FALSE(t.overlaps(Tensor::zeros({10, 4})));
}

TEST_CASE("copy_, clone, to and typed access", "[tensor]") {
  Tensor a = Tensor::from_vector({1, 2, 3, 4}, {2, 2});
  Tensor b = Tensor::empty({4});
  b.copy_(a);
  CHECK(b.to_vector() == std::vector<float>{1, 2, 3, 4});
  Tensor c = a.clone();
  c.set_item(0, 7.0);
  CHECK(a.item(0) == 1.0);
  CHECK(a.to(Device::cpu()).shares_storage(a));
  CHECK(a.data<float>()[3] == 4.0f);
  CHECK_THROWS_WITH(a.data<int32_t>(), Catch::Contains("accessed as i32"));
  CHECK_THROWS_WITH(b.copy_(Tensor::zeros({3})), Catch::Contains("different numbers of elements"));
  CHECK_THROWS_WITH(b.copy_(Tensor::zeros({4}, DType::bf16)), Catch::Contains("ops::cast"));
  CHECK_THROWS_WITH(a.item(4), Catch::Contains("out of range"));
}

TEST_CASE("from_blob wraps caller memory without copying", "[tensor]") {
  std::vector<int32_t> buffer{5, 6, 7};
  bool released = false;
  {
    Tensor t = Tensor::from_blob(buffer.data(), {3}, DType::i32, Device::cpu(), [&](void*) { released = true; });
    CHECK(t.data_ptr() == buffer.data());
    t.set_item(1, 60);
    CHECK(buffer[1] == 60);
  }
  CHECK(released);
  CHECK_THROWS_WITH(Tensor::from_blob(nullptr, {2}, DType::f32), Catch::Contains("null"));
}

TEST_CASE("devices parse and report availability", "[tensor][device]") {
  CHECK(Device::parse("cpu").is_cpu());
  CHECK(Device::parse("cuda:3").index() == 3);
  CHECK(Device::parse("cuda") == Device::cuda(0));
  CHECK(Device::cuda(1).str() == "cuda:1");
  CHECK_THROWS_WITH(Device::parse("gpu"), Catch::Contains("cannot parse device 'gpu'"));
  CHECK_THROWS_WITH(Device::parse("cuda:x"), Catch::Contains("cannot parse"));
  if (cuda_device_count() == 0) {
    CHECK_THROWS_WITH(Tensor::empty({2}, DType::f32, Device::cuda(0)), Catch::Contains("cuda:0 requested"));
  }
}
