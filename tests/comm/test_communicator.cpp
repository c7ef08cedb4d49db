// Communicator in one process (world size 1): argument validation happens at
// the call, with messages naming what was wrong; Work handles behave.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <thread>

#include "comm/failure_report.h"
#include "comm/straggler.h"
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

TEST_CASE("failure translation: blame first, then what to do, then the transport's text", "[comm][failure]") {
  Evidence e;
  e.peers.resize(4);
  for (int r = 0; r < 4; ++r) {
    e.peers[r].rank = r;
    e.peers[r].heartbeat_seen = true;
    e.peers[r].entered = 7;
  }
  e.peers_read = true;
  FailureContext c;
  c.op = "all_reduce #7 (f32, 10 elements, sum, cpu)";
  c.sequence = 7;
  c.rank = 1;
  c.timeout_s = 4;
  c.cause = "[gloo/transport/tcp/pair.cc:598] Connection closed by peer [127.0.0.1]:46316";

  SECTION("a dead rank") {
    e.peers[2].lost = true;
    const std::string m = translate_failure(c, e, 1.0);
    CHECK(m.rfind("all_reduce #7 (f32", 0) == 0);
    CHECK(m.find("failed on rank 1: rank 2 died (the store host saw") != std::string::npos);
    const auto todo = m.find("What to do:"), cause = m.find("Cause: [gloo/transport");
    REQUIRE(todo != std::string::npos);
    REQUIRE(cause != std::string::npos);
    CHECK(todo < cause);
    CHECK(evidence_blames_someone(e, 1, 1.0));
  }
  SECTION("a stopped rank, and a rank that left") {
    e.peers[3].silent_s = 5;
    e.peers[0].left_after = 6;
    c.kind = FailureKind::timeout;
    const std::string m = translate_failure(c, e, 1.0);
    CHECK(m.find("timed out after 4.0 s on rank 1") != std::string::npos);
    CHECK(m.find("rank 3 is unresponsive (no heartbeat for 5.0 s") != std::string::npos);
    CHECK(m.find("rank 0 left the job") != std::string::npos);
    CHECK(m.find("DTRAIN_TIMEOUT_S=4.0") != std::string::npos);
  }
  SECTION("the store host: lost, or silent (then nobody else is blamed by heartbeat)") {
    e.store_lost = true;
    CHECK(translate_failure(c, e, 1.0).find("rank 0 died (the store it hosts") != std::string::npos);
    e.store_lost = false;
    e.store_silent_s = 3;
    e.peers[2].silent_s = 3;
    const std::string m = translate_failure(c, e, 1.0);
    CHECK(m.find("rank 0 is unresponsive (the store it hosts has not answered for 3.0 s)") != std::string::npos);
    CHECK(m.find("rank 2") == std::string::npos);
  }
  SECTION("timeouts: who did not arrive, or the network") {
    c.kind = FailureKind::timeout;
    e.peers[2].entered = 6;
    CHECK(translate_failure(c, e, 1.0).find("rank 2 did not arrive (it is alive") != std::string::npos);
    e.peers[2].entered = 7;
    CHECK(translate_failure(c, e, 1.0).find("every rank entered it and is alive") != std::string::npos);
    CHECK_FALSE(evidence_blames_someone(e, 1, 1.0));
  }
  SECTION("only the poison is known: it is quoted") {
    c.kind = FailureKind::poisoned;
    c.cause = "all_reduce #7 ... timed out after 4.0 s on rank 3: rank 2 is unresponsive (...)";
    const std::string m = translate_failure(c, e, 1.0);
    CHECK(m.find("another rank failed first and said so in the job's poison key") != std::string::npos);
    CHECK(m.find("rank 2 is unresponsive") != std::string::npos);
  }
}

TEST_CASE("straggler detection: one rank much later than the others, above a floor", "[comm][failure]") {
  // Total waits over 20 collectives: rank 3 waits 0.8 s less, i.e. arrives 40 ms late each time.
  auto v = find_stragglers({1.0, 1.0, 0.99, 0.2}, 20);
  REQUIRE(v.size() == 1);
  CHECK(v[0].rank == 3);
  CHECK(v[0].lag_s == Approx(0.04));
  CHECK(find_stragglers({1.0, 1.0, 1.0, 1.0}, 20).empty());
  CHECK(find_stragglers({1.0, 0.99, 0.98, 0.97}, 20).empty());  // 1.5 ms per collective: below the 5 ms floor
  auto both = find_stragglers({1.0, 1.0, 0.2, 0.2}, 20);        // two late ranks: both named
  REQUIRE(both.size() == 2);
  CHECK(both[0].rank == 2);
  CHECK(both[1].rank == 3);
  auto two = find_stragglers({0.3, 1.0}, 20);  // world 2: the other rank's lag is 0
  REQUIRE(two.size() == 1);
  CHECK(two[0].rank == 0);
}
