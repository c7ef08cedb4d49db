// Communicator in one process (world size 1): argument validation happens at
// the call, with messages naming what was wrong; Work handles behave.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <thread>

#include "dtrain/comm.h"

using namespace dtrain;
using namespace dtrain::comm;
using namespace std::chrono_literals;

namespace {
std::shared_ptr<Communicator> solo() {
  static int n = 0;
  const auto dir = std::filesystem::temp_directory_path() /
                   ("dtrain_solo_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
  std::filesystem::remove_all(dir);
  CommOptions o;
  o.timeout = 10s;
  return std::make_shared<Communicator>(std::make_shared<FileStore>(dir.string(), 10s), 0, 1, o);
}
}  // namespace

TEST_CASE("Communicator validates arguments when the call is made", "[comm][communicator]") {
  auto c = solo();
  Tensor f = Tensor::zeros({4}, DType::f32);
  CHECK_THROWS_WITH(c->all_reduce(Tensor()), Catch::Contains("undefined tensor"));
  CHECK_THROWS_WITH(c->all_reduce(Tensor::zeros({4}, DType::u8)), Catch::Contains("dtype u8 is not supported"));
  CHECK_THROWS_WITH(c->all_reduce(f, Tensor::zeros({4}, DType::bf16)),
                    Catch::Contains("input is f32 but output is bf16"));
  CHECK_THROWS_WITH(c->all_reduce(f, Tensor::zeros({5})), Catch::Contains("input has 4 elements but output has 5"));
  Tensor big = Tensor::zeros({8});
  CHECK_THROWS_WITH(c->all_reduce(big.narrow(0, 4), big.narrow(2, 4)), Catch::Contains("partly overlap"));
  CHECK_THROWS_WITH(c->reduce_scatter(f, Tensor::zeros({3})), Catch::Contains("size() * output.numel()"));
  CHECK_THROWS_WITH(c->all_gather(f, Tensor::zeros({3})), Catch::Contains("size() * input.numel()"));
  CHECK_THROWS_WITH(c->broadcast(f, 1), Catch::Contains("root 1 is outside [0, 1)"));
  CHECK_THROWS_WITH(c->send(f, 0), Catch::Contains("must be another rank"));
  CHECK_THROWS_WITH(c->recv(f, 3), Catch::Contains("must be another rank"));
  CHECK_THROWS_WITH(c->all_to_all(f, Tensor::zeros({2})), Catch::Contains("input has 4 elements but output has 2"));
  if (!cuda_compiled())
    CHECK_THROWS_WITH(c->all_reduce(Tensor::from_blob(f.data_ptr(), {4}, DType::f32, Device::cuda(0))),
                      Catch::Contains("built without CUDA"));
  CHECK(c->error().empty());  // argument errors do not break the communicator
  CHECK(c->sequence_number() == 0);
}

TEST_CASE("Work handles: async completion, sequence numbers, default Work", "[comm][communicator]") {
  auto c = solo();
  Tensor t = Tensor::full({3}, 2.0, DType::f32);
  Work a = c->all_reduce(t, ReduceOp::avg);
  Work b = c->barrier();
  b.wait(5s);
  CHECK(a.is_completed());  // in order: a finished before b
  a.wait();
  CHECK(t.item(2) == 2.0f);
  CHECK(a.op() == "all_reduce");
  CHECK(a.sequence() == 1);
  CHECK(b.sequence() == 2);
  CHECK(c->sequence_number() == 2);
  Work none;
  CHECK(none.is_completed());
  none.wait();
  auto sub = c->split(7, 0);
  REQUIRE(sub != nullptr);
  CHECK(sub->size() == 1);
  sub->all_reduce(t).wait();
}

TEST_CASE("Work::wait(timeout) throws while a peer has not joined, then completes", "[comm][communicator]") {
  // Two ranks in one process, each with its own communicator over one FileStore.
  const auto dir = std::filesystem::temp_directory_path() / ("dtrain_pair_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto store = std::make_shared<FileStore>(dir.string(), 10s);
  CommOptions o;
  o.timeout = 10s;
  std::shared_ptr<Communicator> c1;
  std::thread peer([&] { c1 = std::make_shared<Communicator>(store, 1, 2, o); });
  auto c0 = std::make_shared<Communicator>(store, 0, 2, o);
  peer.join();
  Tensor a = Tensor::full({4}, 1.0, DType::i32);
  Tensor b = Tensor::full({4}, 2.0, DType::i32);
  Work w0 = c0->all_reduce(a);
  CHECK_THROWS_WITH(w0.wait(100ms),
                    Catch::Contains("all_reduce #1") && Catch::Contains("did not finish within 100 ms"));
  CHECK_FALSE(w0.is_completed());
  Work w1 = c1->all_reduce(b);
  w0.wait();
  w1.wait();
  CHECK(a.item(3) == 3);
  CHECK(b.item(0) == 3);
  c0.reset();
  c1.reset();
  std::filesystem::remove_all(dir);
}
