// A relay between rank 1 and the store of a live 2-rank training job passes
// the honest handshake, then flips a byte of a request, replays a request,
// injects a forged `set` of the poison key, and flips a byte of a reply (one
// attack per connection). Each time the connection must be dropped without
// the frame being acted on, rank 1 must reconnect, and the job must train on
// and finish cleanly.
#include <catch2/catch.hpp>

#include "attack_util.h"
#include "relay.h"

using namespace dtrain::testing;
using namespace std::chrono_literals;

namespace {
size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}
}  // namespace

TEST_CASE("a relay that tampers with, replays or injects store frames is dropped and the job trains on",
          "[security][relay]") {
  TrainingJob job;
  Relay relay(job.store_port());
  job.env(1)["MASTER_PORT"] = std::to_string(relay.port());
  job.start(0);
  job.start(1);
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (relay.attacks_done() < Relay::kAttacks && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(50ms);
  const int steps_after_attacks = job.steps();
  REQUIRE(job.wait_for_steps(steps_after_attacks + 20, 30s));  // still training
  const auto rs = job.stop_and_wait(60s);
  INFO(dump(rs));
  CHECK(relay.attacks_done() == Relay::kAttacks);
  CHECK(relay.connections() >= Relay::kAttacks + 1);
  CHECK(rs[0].exit_code == 0);
  CHECK(rs[1].exit_code == 0);
  // The store host saw three request-side attacks and acted on none.
  CHECK(count(rs[0].output, "failed authentication (tampered, replayed, reordered or forged); not acted on") == 3);
  CHECK(rs[0].output.find("marking the job failed") == std::string::npos);
  // Rank 1 caught the forged reply itself and reconnected after every attack.
  CHECK(count(rs[1].output, "a reply failed authentication") == 1);
  CHECK(count(rs[1].output, "reconnecting") >= static_cast<size_t>(Relay::kAttacks));
  for (const auto& r : rs) CHECK(r.output.find("pwned") == std::string::npos);
}
