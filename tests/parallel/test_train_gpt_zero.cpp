// train_gpt through the data-parallel engine under dtrain-run (2 local ranks):
// the metrics contract (per-rank step times and memory, the final summary with
// measured and predicted model state), the loss equal to single-process
// training (train_gpt without --zero or a launcher: the engine at world size 1,
// no communication), the dry run and a batch that does not split.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "check_close.h"
#include "comm/process_util.h"

using namespace dtrain::testing;

namespace {

const std::vector<std::string> kTiny = {"--n-layer",    "1", "--n-embd",        "32", "--n-head",        "2",
                                        "--batch",      "8", "--seq-len",       "20", "--steps",         "10",
                                        "--eval-every", "0", "--eval-problems", "4",  "--sample-tokens", "0"};

ProcessResult run(const std::vector<std::string>& launcher, const std::vector<std::string>& args) {
  std::vector<std::string> argv = launcher;
  argv.push_back(DTRAIN_TRAIN_GPT);
  argv.insert(argv.end(), args.begin(), args.end());
  Env env = {{"OMP_NUM_THREADS", "1"}, {"DTRAIN_TIMEOUT_S", "60"}, {"WORLD_SIZE", "<unset>"}};
  Process p(argv, env);
  return p.wait(std::chrono::seconds(120));
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::string temp_path(const char* name) {
  return "/tmp/dtrain_dp_" + std::to_string(::getpid()) + "_" + name;
}

}  // namespace

TEST_CASE("train_gpt --zero 3 under dtrain-run writes per-rank metrics and the model-state summary", "[parallel]") {
  const std::string m3 = temp_path("zero3.jsonl"), m0 = temp_path("zero0.jsonl");
  const std::vector<std::string> launcher = {DTRAIN_RUN, "--nproc-per-node", "2"};
  auto args = kTiny;
  args.insert(args.end(), {"--zero", "3", "--metrics-out", m3});
  const auto r3 = run(launcher, args);
  INFO(r3.output);
  REQUIRE(r3.exit_code == 0);
  CHECK(r3.output.find("memory ledger (per rank, ZeRO stage 3, 2 ranks)") != std::string::npos);
  const auto lines = read_jsonl(m3);
  REQUIRE(lines.size() == 11);
  CHECK(lines[0]["rank_step_ms"].size() == 2);
  CHECK(lines[0]["rank_peak_bytes"].size() == 2);
  const auto& summary = lines.back();
  REQUIRE(summary["final"] == true);
  CHECK(summary["world_size"] == 2);
  CHECK(summary["zero_stage"] == 3);
  const double measured = summary["model_state_bytes"], predicted = summary["model_state_bytes_predicted"];
  std::printf("train_gpt --zero 3, 2 ranks: model state %.0f bytes measured, %.0f predicted\n", measured, predicted);
  CHECK(std::fabs(measured / predicted - 1.0) < 0.05);

  // The same global batch in one process (no --zero, no launcher: the engine
  // at world size 1, stage 0): the same losses at every step. f32;
  // reductions in a different order: measured ~1e-7 normalised.
  auto args0 = kTiny;
  args0.insert(args0.end(), {"--metrics-out", m0});
  const auto r0 = run({}, args0);
  INFO(r0.output);
  REQUIRE(r0.exit_code == 0);
  const auto lines0 = read_jsonl(m0);
  REQUIRE(lines0.size() == 11);
  CHECK(lines0.back()["world_size"] == 1);  // really one process
  CHECK(lines0.back()["zero_stage"] == 0);
  std::vector<double> zero3, plain;
  for (size_t i = 0; i < 10; ++i) {
    zero3.push_back(lines[i]["loss"]);
    plain.push_back(lines0[i]["loss"]);
  }
  CHECK_CLOSE(zero3, plain, 1e-5);
  std::remove(m3.c_str());
  std::remove(m0.c_str());
}

TEST_CASE("train_gpt --dry-run prints the plan and a global batch that does not split is refused", "[parallel]") {
  const std::vector<std::string> launcher = {DTRAIN_RUN, "--nproc-per-node", "2"};
  auto args = kTiny;
  args.insert(args.end(), {"--zero", "2", "--dry-run"});
  const auto dry = run(launcher, args);
  INFO(dry.output);
  CHECK(dry.exit_code == 0);
  CHECK(dry.output.find("DataParallel plan: ZeRO stage 2, 2 rank(s)") != std::string::npos);
  CHECK(dry.output.find("step ") == std::string::npos);

  auto bad = kTiny;
  bad.insert(bad.end(), {"--zero", "1", "--grad-accum", "3"});
  const auto r = run(launcher, bad);
  INFO(r.output);
  CHECK(r.exit_code != 0);
  CHECK(r.output.find("must be divisible by world size x --grad-accum = 2 x 3") != std::string::npos);
}
