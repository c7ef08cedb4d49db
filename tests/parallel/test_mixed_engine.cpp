// The mixed-precision engine across processes (mixed_worker.cpp): bf16 and
// f16 at every ZeRO stage equal plain single-process mixed precision bit for
// bit, and the model state the allocator holds matches predict_model_state.
// World size 1 runs without a launcher (Communicator::single_process, as a
// training loop without one does).
#include <catch2/catch.hpp>

#include "rank_checks.h"

using namespace dtrain::testing;

namespace {

void run_and_check(int world, const std::vector<std::string>& args, size_t min_checks) {
  if (world > 1) {
    run_worker_and_check(DTRAIN_MIXED_WORKER, world, args, min_checks);
    return;
  }
  std::vector<std::string> argv = {DTRAIN_MIXED_WORKER};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, Env{{"WORLD_SIZE", "<unset>"}, {"OMP_NUM_THREADS", "1"}});
  const ProcessResult r = p.wait(std::chrono::seconds(120));
  INFO("output:\n" << r.output);
  REQUIRE_FALSE(r.timed_out);
  REQUIRE(r.exit_code == 0);
  std::printf("---- world size 1 ----\n%s", r.output.c_str());
  check_every_rank({r}, min_checks);
}

}  // namespace

TEST_CASE(
    "the bf16 and f16 engine equals plain mixed precision bit for bit at every stage and a clipped bf16 step "
    "reads nothing back with the norm on the device",
    "[parallel][mixed]") {
  // 2 precisions x (4 stages x (plain, 4 norm-on-device checks) + 2 stages
  // with accumulation), + stage 0 with clipping at world size 1.
  run_and_check(1, {"exact"}, 2 * (4 * 5 + 2) + 2);
  run_and_check(2, {"exact"}, 2 * (4 * 5 + 2));
  run_and_check(4, {"exact"}, 2 * (4 * 5 + 2));
}

TEST_CASE("the bf16 and f16 engine holds the predicted model state at every stage", "[parallel][mixed]") {
  // 2 precisions x 4 stages x (allocator, ledger, ledger gradients).
  for (int world : {1, 2, 4}) run_and_check(world, {"memory"}, 2 * 4 * 3);
}
