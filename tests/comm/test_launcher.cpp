// dtrain-run: environment, output prefixes, failure propagation, signals.
#include <catch2/catch.hpp>
#include <cerrno>
#include <thread>

#include "process_util.h"

using namespace dtrain::testing;
using namespace std::chrono_literals;

TEST_CASE("dtrain-run sets the rank environment and prefixes output", "[comm][launcher]") {
  Process p({DTRAIN_RUN, "--nproc-per-node", "3", DTRAIN_COMM_WORKER, "print-env"},
            {{"DTRAIN_AUTH_TOKEN", "<unset>"}, {"OMP_NUM_THREADS", "<unset>"}});
  auto r = p.wait(20s);
  INFO(r.output);
  CHECK(r.exit_code == 0);
  for (int rank = 0; rank < 3; ++rank) {
    const std::string pre = "[rank " + std::to_string(rank) + "] ";
    CHECK(r.output.find(pre + "RANK=" + std::to_string(rank)) != std::string::npos);
    CHECK(r.output.find(pre + "LOCAL_RANK=" + std::to_string(rank)) != std::string::npos);
    CHECK(r.output.find(pre + "WORLD_SIZE=3") != std::string::npos);
    CHECK(r.output.find(pre + "LOCAL_WORLD_SIZE=3") != std::string::npos);
    CHECK(r.output.find(pre + "MASTER_ADDR=127.0.0.1") != std::string::npos);
    CHECK(r.output.find(pre + "TOKEN_LEN=48") != std::string::npos);  // a fresh token
    CHECK(r.output.find(pre + "OMP_NUM_THREADS=") != std::string::npos);
    CHECK(r.output.find(pre + "to stderr") != std::string::npos);
  }
  CHECK(r.output.find("OMP_NUM_THREADS=0") == std::string::npos);
}

TEST_CASE("dtrain-run node arguments give global ranks", "[comm][launcher]") {
  Process p({DTRAIN_RUN, "--nproc-per-node", "2", "--nnodes", "3", "--node-rank", "2", "--master-addr", "10.1.2.3",
             "--master-port", "4567", DTRAIN_COMM_WORKER, "print-env"},
            {{"DTRAIN_AUTH_TOKEN", kTestToken}, {"OMP_NUM_THREADS", "3"}});
  auto r = p.wait(20s);
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("[rank 5] RANK=5") != std::string::npos);
  CHECK(r.output.find("[rank 4] WORLD_SIZE=6") != std::string::npos);
  CHECK(r.output.find("[rank 5] MASTER_PORT=4567") != std::string::npos);
  CHECK(r.output.find("[rank 4] OMP_NUM_THREADS=3") != std::string::npos);
  CHECK(r.output.find("[rank 4] TOKEN_LEN=32") != std::string::npos);
  // Multi-node needs a token given by the user.
  Process q({DTRAIN_RUN, "--nproc-per-node", "1", "--nnodes", "2", "--node-rank", "0", DTRAIN_COMM_WORKER, "exit"},
            {{"DTRAIN_AUTH_TOKEN", "<unset>"}});
  auto rq = q.wait(10s);
  CHECK(rq.exit_code == 2);
  CHECK(rq.output.find("DTRAIN_AUTH_TOKEN") != std::string::npos);
}

TEST_CASE("dtrain-run stops the others when one rank fails and reports it", "[comm][launcher]") {
  // Rank 1 exits with 7 while the others sleep: they are stopped at once.
  Process p({DTRAIN_RUN, "--nproc-per-node", "3", "--grace-s", "1", "/bin/sh", "-c",
             "if [ $RANK = 1 ]; then sleep 0.2; exit 7; else exec sleep 30; fi"},
            {});
  auto r = p.wait(20s);
  INFO(r.output);
  CHECK(r.exit_code == 7);
  CHECK(r.seconds < 5);
  CHECK(r.output.find("dtrain-run: job failed: rank 1 exited with code 7") != std::string::npos);
}

TEST_CASE("dtrain-run escalates to SIGKILL after the grace period", "[comm][launcher]") {
  Process p({DTRAIN_RUN, "--nproc-per-node", "2", "--grace-s", "0.5", "/bin/sh", "-c",
             "if [ $RANK = 0 ]; then exit 3; else trap '' TERM; sleep 30; fi"},
            {});
  auto r = p.wait(20s);
  INFO(r.output);
  CHECK(r.exit_code == 3);
  CHECK(r.seconds < 5);
}

TEST_CASE("dtrain-run forwards SIGTERM to the ranks", "[comm][launcher]") {
  Process p({DTRAIN_RUN, "--nproc-per-node", "2", DTRAIN_COMM_WORKER, "sleep", "30"}, {});
  // Both ranks report in only after the launcher installed its handlers.
  REQUIRE(p.wait_for_output("[rank 0] sleeping", 20s));
  REQUIRE(p.wait_for_output("[rank 1] sleeping", 20s));
  ::kill(p.pid(), SIGTERM);
  auto r = p.wait(10s);
  INFO(r.output);
  CHECK(r.exit_code == 128 + SIGTERM);
  CHECK(r.seconds < 5);
  CHECK(r.output.find("forwarding") != std::string::npos);
}

TEST_CASE("dtrain-run reports a rank SIGKILLed mid-collective", "[comm][launcher][multiprocess]") {
  Process p({DTRAIN_RUN, "--nproc-per-node", "3", DTRAIN_COMM_WORKER, "kill", "1"}, {{"DTRAIN_TIMEOUT_S", "5"}});
  auto r = p.wait(30s);
  INFO(r.output);
  CHECK(r.exit_code == 128 + SIGKILL);
  CHECK(r.output.find("dtrain-run: job failed: rank 1 was killed by signal 9") != std::string::npos);
  CHECK(r.seconds < 10);
}

TEST_CASE("dtrain-run reports a program that cannot be started", "[comm][launcher]") {
  Process p({DTRAIN_RUN, "--nproc-per-node", "2", "/nonexistent/program"}, {});
  auto r = p.wait(10s);
  INFO(r.output);
  CHECK(r.exit_code == 127);
  CHECK(r.output.find("cannot execute '/nonexistent/program'") != std::string::npos);
  CHECK(r.output.find("dtrain-run: job failed: rank") != std::string::npos);
}

TEST_CASE("dtrain-run names the failing rank and its reason in one line", "[comm][launcher]") {
  Process p({DTRAIN_RUN, "--nproc-per-node", "3", "--grace-s", "1", "/bin/sh", "-c",
             "if [ $RANK = 2 ]; then sleep 0.2; echo 'disk full on /data' >&2; exit 7; else exec sleep 30; fi"},
            {});
  auto r = p.wait(20s);
  INFO(r.output);
  CHECK(r.exit_code == 7);
  CHECK(r.output.find("dtrain-run: job failed: rank 2 exited with code 7: disk full on /data") != std::string::npos);
}

TEST_CASE("dtrain-run leaves no process behind, grandchildren included", "[comm][launcher]") {
  // Each rank starts a background child, then rank 1 fails; the others sleep.
  Process p({DTRAIN_RUN, "--nproc-per-node", "3", "--grace-s", "1", "/bin/sh", "-c",
             "sleep 300 & echo \"child $!\"; if [ $RANK = 1 ]; then sleep 0.3; exit 5; fi; sleep 300"},
            {});
  auto r = p.wait(20s);
  INFO(r.output);
  CHECK(r.exit_code == 5);
  CHECK(r.seconds < 5);
  std::vector<pid_t> children;
  for (size_t at = r.output.find("] child "); at != std::string::npos; at = r.output.find("] child ", at + 1))
    children.push_back(static_cast<pid_t>(std::stol(r.output.substr(at + 8))));
  REQUIRE(children.size() == 3);
  for (pid_t c : children) {
    bool gone = false;
    for (int i = 0; i < 200 && !gone; ++i) {
      gone = ::kill(c, 0) != 0 && errno == ESRCH;
      if (!gone) std::this_thread::sleep_for(10ms);
    }
    INFO("grandchild " << c);
    CHECK(gone);
  }
}

TEST_CASE("dtrain-run kills a stopped (SIGSTOP) rank after the grace period", "[comm][launcher]") {
  // Rank 0 stops itself (ignoring SIGTERM once continued); rank 1 fails.
  Process p({DTRAIN_RUN, "--nproc-per-node", "2", "--grace-s", "1", "/bin/sh", "-c",
             "if [ $RANK = 0 ]; then trap '' TERM; kill -STOP $$; sleep 300; else sleep 0.5; exit 4; fi"},
            {});
  auto r = p.wait(20s);
  INFO(r.output);
  CHECK(r.exit_code == 4);
  CHECK(r.seconds < 5);
  CHECK(r.output.find("dtrain-run: rank 0 (pid") != std::string::npos);
  CHECK(r.output.find("was stopped by signal 19") != std::string::npos);
  CHECK(r.output.find("dtrain-run: job failed: rank 1 exited with code 4") != std::string::npos);
}

TEST_CASE("dtrain-run ends the job within 5 s of Ctrl-C, even if ranks ignore it", "[comm][launcher]") {
  Process p({DTRAIN_RUN, "--nproc-per-node", "2", "/bin/sh", "-c", "trap '' INT TERM; echo ready; sleep 300"}, {});
  REQUIRE(p.wait_for_output("[rank 0] ready", 20s));
  REQUIRE(p.wait_for_output("[rank 1] ready", 20s));
  const auto sent = std::chrono::steady_clock::now();
  ::kill(p.pid(), SIGINT);
  auto r = p.wait(30s);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
  INFO(r.output);
  CHECK(r.exit_code == 128 + SIGINT);
  CHECK(took < 5);
}
