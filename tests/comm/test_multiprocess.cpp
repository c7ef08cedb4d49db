// Collectives across real processes on loopback: values, failures, desync.
#include <catch2/catch.hpp>
#include <filesystem>

#include "process_util.h"
#include "test_support.h"

using namespace dtrain::testing;
using namespace std::chrono_literals;

namespace {
// The rank's own error: the line comm_worker prints for the exception it
// caught ("ERROR: ..."), not what other processes (the store host) logged.
std::string own_error(const std::string& output) {
  const auto at = output.find("ERROR: ");
  if (at == std::string::npos) return "";
  return output.substr(at, output.find('\n', at) - at);
}

std::string dump(const std::vector<ProcessResult>& rs) {
  std::string s;
  for (size_t i = 0; i < rs.size(); ++i)
    s += "---- rank " + std::to_string(i) + " exit " + std::to_string(rs[i].exit_code) + " after " +
         std::to_string(rs[i].seconds) + " s\n" + rs[i].output;
  return s;
}
}  // namespace

TEST_CASE("every collective, dtype and op gives hand-computed values at world sizes 1-4", "[comm][multiprocess]") {
  for (int world : {1, 2, 3, 4}) {
    // Generous limits: under sanitizers on a loaded 2-core machine a launch
    // can be many times slower than its usual 1-2 s.
    auto ranks = start_ranks(world, {"collectives"}, {{"DTRAIN_TIMEOUT_S", "60"}});
    auto rs = wait_all(ranks, 120s);
    INFO("world " << world << "\n" << dump(rs));
    for (const auto& r : rs) {
      CHECK_FALSE(r.timed_out);
      CHECK(r.exit_code == 0);
      CHECK(r.output.find(", 0 failures") != std::string::npos);
    }
  }
}

TEST_CASE("a rank SIGKILLed mid-collective makes every other rank fail naming it", "[comm][multiprocess]") {
  // World 4: in Gloo's ring rank 3 is no neighbour of rank 1, so it learns of
  // the death from the store's poison key, not from a broken connection. The
  // timeout is long on purpose: failing must not wait for it.
  const double timeout_s = 20;
  auto ranks = start_ranks(4, {"kill", "1"}, {{"DTRAIN_TIMEOUT_S", "20"}});
  auto rs = wait_all(ranks, 60s);
  INFO(dump(rs));
  CHECK(rs[1].exit_code == 128 + SIGKILL);
  // Each survivor's own error names the dead rank (rank 0's output also
  // holds the store host's log line about rank 1, which must not count).
  for (int r : {0, 2, 3}) {
    const std::string error = own_error(rs[r].output);
    INFO("rank " << r << ": " << error);
    CHECK_FALSE(rs[r].timed_out);
    CHECK(rs[r].exit_code == 3);
    CHECK(rs[r].seconds < timeout_s / 2);
    CHECK(error.find("rank 1 died") != std::string::npos);
    CHECK(error.find("all_reduce #2") != std::string::npos);
  }
}

TEST_CASE("a rank that does not arrive is named by the timeout on every other rank", "[comm][multiprocess]") {
  // Timeout 3 s (rendezvous must fit in it too, on a loaded machine); rank 2 comes after 5.5 s.
  auto ranks = start_ranks(3, {"stuck", "2", "5500"}, {{"DTRAIN_TIMEOUT_S", "3"}});
  auto rs = wait_all(ranks, 30s);
  INFO(dump(rs));
  for (int r : {0, 1}) {
    const std::string error = own_error(rs[r].output);
    INFO("rank " << r << ": " << error);
    CHECK(rs[r].exit_code == 3);
    CHECK(error.find("all_reduce #2") != std::string::npos);
    CHECK(error.find("timed out") != std::string::npos);
    CHECK(error.find("rank 2 did not arrive (it is alive") != std::string::npos);
    CHECK(rs[r].seconds < 3 + 5);
  }
  // The late rank then finds the job failed instead of hanging.
  CHECK(rs[2].exit_code == 3);
}

TEST_CASE("mismatched collectives raise a desync error naming the ranks", "[comm][multiprocess]") {
  SECTION("different counts") {
    auto ranks = start_ranks(3, {"desync", "count"}, {{"DTRAIN_TIMEOUT_S", "10"}, {"DTRAIN_DEBUG_COLLECTIVES", "1"}});
    auto rs = wait_all(ranks, 20s);
    INFO(dump(rs));
    for (const auto& r : rs) {
      CHECK(r.exit_code == 3);
      CHECK(r.output.find("collective mismatch at sequence #1") != std::string::npos);
      CHECK(r.output.find("ranks [0, 2] called all_reduce(f32, 10 elements, sum") != std::string::npos);
      CHECK(r.output.find("rank 1 called all_reduce(f32, 11 elements, sum") != std::string::npos);
      CHECK(r.seconds < 8);
    }
  }
  SECTION("different ops") {
    auto ranks = start_ranks(2, {"desync", "op"}, {{"DTRAIN_TIMEOUT_S", "10"}, {"DTRAIN_DEBUG_COLLECTIVES", "1"}});
    auto rs = wait_all(ranks, 20s);
    INFO(dump(rs));
    for (const auto& r : rs) {
      CHECK(r.exit_code == 3);
      CHECK(r.output.find("rank 1 called all_reduce(f32, 10 elements, max") != std::string::npos);
    }
  }
}

TEST_CASE("wrong or missing token is refused within a second and the job carries on", "[comm][multiprocess][auth]") {
  const int port = dtrain::comm::net::pick_free_port();
  char stop_path[] = "/tmp/dtrain_comm_stop_XXXXXX";
  const int fd = ::mkstemp(stop_path);
  ::close(fd);
  ::unlink(stop_path);
  auto job = start_ranks(2, {"long-job", stop_path}, {{"DTRAIN_TIMEOUT_S", "30"}}, port);
  // Wait until rank 0's store listens (a bare TCP connect; it is closed before any handshake).
  const auto until = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    try {
      dtrain::comm::net::connect_once("127.0.0.1", port, dtrain::comm::net::deadline_after(1s));
      break;
    } catch (const std::exception&) {
      REQUIRE(std::chrono::steady_clock::now() < until);
      std::this_thread::sleep_for(20ms);
    }
  }
  for (const std::string& token : std::vector<std::string>{"0b1c2d3e4f5a69788796a5b4c3d2e1f0", "<unset>"}) {
    Env env = job_env(5, 6, port);
    env["DTRAIN_AUTH_TOKEN"] = token;
    Process intruder({DTRAIN_COMM_WORKER, "store-client"}, env);
    auto r = intruder.wait(10s);
    INFO(token << ": " << r.output);
    CHECK(r.exit_code == 3);
    // The refusal itself (connect to error) must take under a second; the
    // process as a whole gets slack for start-up on a loaded machine.
    const auto at = r.output.find("refused after ");
    REQUIRE(at != std::string::npos);
    CHECK(std::stol(r.output.substr(at + 14)) < 1000);
    CHECK(r.seconds < 5.0);
    if (token == "<unset>")  // refused before it reaches the store
      CHECK(r.output.find("DTRAIN_AUTH_TOKEN is not set") != std::string::npos);
    else
      CHECK(r.output.find("refused this process") != std::string::npos);
  }
  std::ofstream(stop_path) << "stop";
  auto rs = wait_all(job, 30s);
  ::unlink(stop_path);
  INFO(dump(rs));
  CHECK(rs[0].exit_code == 0);
  CHECK(rs[1].exit_code == 0);
  CHECK(rs[0].output.find("[dtrain store] refused connection") != std::string::npos);
}

TEST_CASE("CUDA tensors go through NCCL (one GPU per rank)", "[comm][multiprocess][gpu]") {
  require_gpu_or_skip();
  const int world = std::min(dtrain::cuda_device_count(), 2);
  auto ranks = start_ranks(world, {"cuda"}, {{"DTRAIN_TIMEOUT_S", "60"}});
  auto rs = wait_all(ranks, 120s);
  INFO(dump(rs));
  for (const auto& r : rs) {
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("cuda checks passed") != std::string::npos);
  }
}

TEST_CASE("when the store host (rank 0) is killed the others fail naming it", "[comm][multiprocess]") {
  auto ranks = start_ranks(3, {"kill", "0"}, {{"DTRAIN_TIMEOUT_S", "5"}});
  auto rs = wait_all(ranks, 30s);
  INFO(dump(rs));
  CHECK(rs[0].exit_code == 128 + SIGKILL);
  for (int r : {1, 2}) {
    const std::string error = own_error(rs[r].output);
    INFO("rank " << r << ": " << error);
    CHECK(rs[r].exit_code == 3);
    CHECK(rs[r].seconds < 5 + 5);
    CHECK(error.find("rank 0 died") != std::string::npos);
  }
}

TEST_CASE("ranks can rendezvous through a FileStore directory", "[comm][multiprocess]") {
  char dir[] = "/tmp/dtrain_filestore_XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  auto ranks = start_ranks(3, {"file-store", dir}, {{"DTRAIN_TIMEOUT_S", "20"}});
  auto rs = wait_all(ranks, 30s);
  INFO(dump(rs));
  for (const auto& r : rs) {
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("file store all_reduce passed") != std::string::npos);
  }
  std::filesystem::remove_all(dir);
}
