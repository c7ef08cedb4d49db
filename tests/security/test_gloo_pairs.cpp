// A stranger takes the Gloo pair listener that rank 0 opened for rank 1
// while rank 1 starts late. The job must fail closed: no collective runs,
// and rank 0's error names the address the stranger connected from. Rank 1
// uses Gloo address 127.0.0.2 so that rank 0 (127.0.0.1) is the listening
// side of their pair (Gloo orders the two ends by address).
#include <catch2/catch.hpp>

#include "attack_util.h"

using namespace dtrain::testing;
using namespace std::chrono_literals;

TEST_CASE("a stranger on a Gloo pair fails the job closed, naming its address", "[security][gloo]") {
  TrainingJob job;
  for (int r = 0; r < 2; ++r) job.env(r)["DTRAIN_TIMEOUT_S"] = "6";
  job.env(0)["DTRAIN_GLOO_ADDR"] = "127.0.0.1";
  job.env(1)["DTRAIN_GLOO_ADDR"] = "127.0.0.2";
  // Every rank arrives in the store before Gloo connects (so a rank that
  // never comes is named), so rank 1 is made late at the Gloo step itself.
  job.env(1)["DTRAIN_TEST_GLOO_CONNECT_DELAY_MS"] = "3000";
  job.start(0);
  job.start(1);
  // Rank 0's pair listener: a listening port of rank 0 other than the store's.
  int pair_port = 0;
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (pair_port == 0 && std::chrono::steady_clock::now() < until) {
    for (int p : listening_ports(job.rank(0).pid()))
      if (p != job.store_port()) pair_port = p;
    std::this_thread::sleep_for(20ms);
  }
  REQUIRE(pair_port != 0);
  const int stranger = connect_from("127.0.0.9", pair_port, false);
  REQUIRE(stranger >= 0);
  const std::string stranger_address = local_name(stranger);
  const auto rs = job.stop_and_wait(40s);
  ::close(stranger);
  INFO("stranger " << stranger_address << "\n" << dump(rs));
  CHECK(rs[0].exit_code != 0);
  CHECK(rs[1].exit_code != 0);
  CHECK(rs[0].output.find("did not prove it holds this job's key") != std::string::npos);
  CHECK(rs[0].output.find(stranger_address) != std::string::npos);
  for (const auto& r : rs) {
    CHECK(r.output.find("step 0") == std::string::npos);  // never trained with the stranger
    CHECK_FALSE(r.timed_out);
  }
}

TEST_CASE("DTRAIN_IFACE pins Gloo to one interface, and an unknown one is an error naming it", "[security][gloo]") {
  {
    TrainingJob job(1.0);
    for (int r = 0; r < 2; ++r) job.env(r)["DTRAIN_IFACE"] = "lo";
    job.start(0);
    job.start(1);
    const auto rs = job.stop_and_wait(60s);
    INFO(dump(rs));
    CHECK(rs[0].exit_code == 0);
    CHECK(rs[1].exit_code == 0);
  }
  TrainingJob job;
  for (int r = 0; r < 2; ++r) {
    job.env(r)["DTRAIN_IFACE"] = "nosuch0";
    job.env(r)["DTRAIN_TIMEOUT_S"] = "5";
  }
  job.start(0);
  job.start(1);
  const auto rs = job.stop_and_wait(30s);
  INFO(dump(rs));
  CHECK(rs[0].exit_code == 2);
  CHECK(rs[0].output.find("DTRAIN_IFACE=nosuch0 names no network interface") != std::string::npos);
  CHECK(rs[1].exit_code == 2);  // it names the interface too, or the store rank 0 took down with it
}
