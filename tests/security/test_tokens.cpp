// Token rules on live jobs: a weak token stops both ranks at start with a
// message saying how to make a good one; `dtrain-run --new-token` makes one
// that a job accepts. (Wrong and missing tokens: tests/comm.)
#include <catch2/catch.hpp>

#include "attack_util.h"

using namespace dtrain::testing;
using namespace std::chrono_literals;

TEST_CASE("a 2-rank job with a weak token is refused at start, saying how to make a token", "[security][token]") {
  for (const std::string& weak : {std::string("s3cret"), std::string("a"), std::string(32, 'f')}) {
    TrainingJob job;
    for (int r = 0; r < 2; ++r) {
      job.env(r)["DTRAIN_AUTH_TOKEN"] = weak;
      job.env(r)["DTRAIN_TIMEOUT_S"] = "5";
    }
    job.start(0);
    job.start(1);
    const auto rs = job.stop_and_wait(30s);
    INFO(weak << "\n" << dump(rs));
    for (const auto& r : rs) {
      CHECK(r.exit_code == 2);
      CHECK(r.output.find("DTRAIN_AUTH_TOKEN") != std::string::npos);
      CHECK(r.output.find("dtrain-run --new-token") != std::string::npos);
      CHECK(r.output.find("step 0") == std::string::npos);
      CHECK(r.seconds < 5);
    }
  }
}

TEST_CASE("dtrain-run --new-token prints 32 random bytes in hex, which a job accepts", "[security][token]") {
  Process a({DTRAIN_RUN, "--new-token"}, {}), b({DTRAIN_RUN, "--new-token"}, {});
  const auto ra = a.wait(10s), rb = b.wait(10s);
  REQUIRE(ra.exit_code == 0);
  const std::string token = ra.output.substr(0, ra.output.find('\n'));
  CHECK(token.size() == 64);
  CHECK(token.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(rb.output.substr(0, 64) != token);
  TrainingJob job(2.0);  // trains two seconds, then stops by itself
  for (int r = 0; r < 2; ++r) job.env(r)["DTRAIN_AUTH_TOKEN"] = token;
  job.start(0);
  job.start(1);
  const auto rs = job.stop_and_wait(60s);  // the stop file is written at once; one step at least
  INFO(dump(rs));
  CHECK(rs[0].exit_code == 0);
  CHECK(rs[1].exit_code == 0);
  CHECK(rs[0].output.find("trained") != std::string::npos);
}
