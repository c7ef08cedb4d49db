// Checkpoints of whole jobs, as real processes: train_gpt under dtrain-run
// stopped and resumed (bitwise the same losses and final state as a job that
// never stopped), a world-4 ZeRO-3 checkpoint loaded at world 2 stage 1 and at
// world 1 (bitwise the same tensors; training continues with the same losses
// within f32 tolerance), and a rank killed in the middle of a save (the
// previous checkpoint still loads, the partial one is skipped with a warning).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "check_close.h"
#include "comm/process_util.h"
#include "dtrain/checkpoint.h"
#include "job_support.h"

using namespace dtrain;
using namespace dtrain::testing;
using namespace dtrain::testing::ckpt_jobs;
namespace fs = std::filesystem;

TEST_CASE("train_gpt resumes exactly: 10 + 10 steps equal 20 straight, bitwise (world 2, ZeRO 0-3)", "[checkpoint]") {
  const std::string stage = GENERATE(as<std::string>{}, "0", "1", "2", "3");
  INFO("ZeRO stage " << stage);
  TempDir d;
  const std::string straight = d.path + "/straight", split = d.path + "/split";
  const auto a = train(2, {"--zero", stage, "--checkpoint-dir", straight, "--checkpoint-every", "10", "--metrics-out",
                           d.path + "/a.jsonl"});
  INFO(a.output);
  REQUIRE(a.exit_code == 0);
  const auto b1 = train(2, {"--zero", stage, "--checkpoint-dir", split, "--checkpoint-every", "10", "--stop-at", "10",
                            "--metrics-out", d.path + "/b1.jsonl"});
  INFO(b1.output);
  REQUIRE(b1.exit_code == 0);
  CHECK(b1.output.find("stopping after step 10") != std::string::npos);
  const auto b2 = train(2, {"--zero", stage, "--checkpoint-dir", split, "--checkpoint-every", "10", "--resume",
                            "--metrics-out", d.path + "/b2.jsonl"});
  INFO(b2.output);
  REQUIRE(b2.exit_code == 0);
  CHECK(b2.output.find("resume: loaded " + split + "/step-00000010") != std::string::npos);

  split_equals_straight(d.path, straight, split);
  checkpoint::Reader r(split + "/step-00000020");
  CHECK(r.meta().step == 20);
  CHECK(r.meta().optimizer_steps == 20);
  CHECK(r.meta().world_size == 2);
  CHECK(r.meta().zero_stage == std::stoi(stage));
}

TEST_CASE("a world-4 ZeRO-3 checkpoint loads at world 2 stage 1 and world 1, bitwise, and training continues",
          "[checkpoint]") {
  TempDir d;
  const std::string src = d.path + "/w4";
  const auto s = train(4, {"--zero", "3", "--checkpoint-dir", src, "--checkpoint-every", "10", "--stop-at", "10"});
  INFO(s.output);
  REQUIRE(s.exit_code == 0);
  const std::string ck = src + "/step-00000010";
  REQUIRE(fs::exists(ck + "/rank-00003.safetensors"));

  resave(2, ck, d.path + "/w2", 1);
  resave(1, ck, d.path + "/w1", 0);
  same_tensors(ck, d.path + "/w2/step-00000010");
  same_tensors(ck, d.path + "/w1/step-00000010");
  CHECK(checkpoint::Reader(d.path + "/w2/step-00000010").meta().world_size == 2);
  CHECK(checkpoint::Reader(d.path + "/w1/step-00000010").files().size() == 1);

  // Continuations from the same checkpoint at three layouts (no further saves).
  const auto c4 = train(4, {"--zero", "3", "--checkpoint-dir", src, "--resume", "--metrics-out", d.path + "/c4.jsonl"});
  INFO(c4.output);
  REQUIRE(c4.exit_code == 0);
  const auto c2 = train(2, {"--zero", "1", "--checkpoint-dir", src, "--resume", "--metrics-out", d.path + "/c2.jsonl"});
  INFO(c2.output);
  REQUIRE(c2.exit_code == 0);
  const auto c1 = train(1, {"--checkpoint-dir", src, "--resume", "--metrics-out", d.path + "/c1.jsonl"});
  INFO(c1.output);
  REQUIRE(c1.exit_code == 0);
  const auto l4 = losses(d.path + "/c4.jsonl"), l2 = losses(d.path + "/c2.jsonl"), l1 = losses(d.path + "/c1.jsonl");
  REQUIRE(l4.size() == 10);
  // Reduction order differs between layouts: f32 tolerance, as the engine's own tests use.
  CHECK_CLOSE(l2, l4, 1e-5);
  CHECK_CLOSE(l1, l4, 1e-5);
}

TEST_CASE("a rank killed mid-save leaves the previous checkpoint loadable, the partial one is skipped",
          "[checkpoint]") {
  TempDir d;
  const std::string dir = d.path + "/ck";
  const auto crash = train(2, {"--zero", "1", "--checkpoint-dir", dir, "--checkpoint-every", "10"},
                           {{"DTRAIN_CHECKPOINT_KILL_AFTER_SHARD", "1@20"}});
  INFO(crash.output);
  CHECK(crash.exit_code != 0);
  CHECK(fs::exists(dir + "/step-00000010/manifest.json"));
  CHECK_FALSE(fs::exists(dir + "/step-00000020"));
  CHECK(fs::exists(dir + "/.tmp-step-00000020"));
  const auto again =
      train(2, {"--zero", "1", "--checkpoint-dir", dir, "--resume", "--metrics-out", d.path + "/again.jsonl"});
  INFO(again.output);
  REQUIRE(again.exit_code == 0);
  CHECK(again.output.find("ignoring incomplete checkpoint " + dir + "/.tmp-step-00000020") != std::string::npos);
  CHECK(again.output.find("resume: loaded " + dir + "/step-00000010") != std::string::npos);
  CHECK(losses(d.path + "/again.jsonl").size() == 10);
}

TEST_CASE("train_gpt with DTRAIN_CHECKPOINT_KEY saves encrypted and resumes only with the right key", "[checkpoint]") {
  TempDir d;
  const std::string dir = d.path + "/ck", key(64, 'a'), wrong(64, 'b');
  const auto s = train(2, {"--zero", "2", "--checkpoint-dir", dir, "--checkpoint-every", "5", "--stop-at", "5"},
                       {{"DTRAIN_CHECKPOINT_KEY", key}});
  INFO(s.output);
  REQUIRE(s.exit_code == 0);
  CHECK(s.output.find("(encrypted)") != std::string::npos);
  const std::vector<std::string> resume = {"--zero", "2", "--checkpoint-dir", dir, "--resume"};
  const auto none = train(2, resume, {{"DTRAIN_CHECKPOINT_KEY", ""}});
  CHECK(none.exit_code != 0);
  CHECK(none.output.find("is encrypted") != std::string::npos);
  const auto bad = train(2, resume, {{"DTRAIN_CHECKPOINT_KEY", wrong}});
  CHECK(bad.exit_code != 0);
  CHECK(bad.output.find("wrong key") != std::string::npos);
  const auto good = train(2, resume, {{"DTRAIN_CHECKPOINT_KEY", key}});
  INFO(good.output);
  CHECK(good.exit_code == 0);
  CHECK(good.output.find("resume: loaded " + dir + "/step-00000005") != std::string::npos);
}

namespace {
// kTiny with --steps replaced.
std::vector<std::string> tiny_steps(const std::string& steps, const std::vector<std::string>& more) {
  std::vector<std::string> args = kTiny;
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--steps") args[i + 1] = steps;
  }
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// The ranks of a train_gpt job started directly (no launcher), so each has its own pid.
std::vector<std::unique_ptr<Process>> start_train_ranks(int world, const std::vector<std::string>& args) {
  const int port = comm::net::pick_free_port();
  std::vector<std::unique_ptr<Process>> ranks;
  for (int r = 0; r < world; ++r) {
    Env env = job_env(r, world, port);
    env["DTRAIN_TIMEOUT_S"] = "10";
    std::vector<std::string> argv = {DTRAIN_TRAIN_GPT};
    argv.insert(argv.end(), args.begin(), args.end());
    ranks.push_back(std::make_unique<Process>(argv, env));
  }
  return ranks;
}
}  // namespace

TEST_CASE("SIGTERM (a preemption notice) saves an emergency checkpoint and stops", "[checkpoint]") {
  TempDir d;
  const std::string dir = d.path + "/ck";
  auto ranks = start_train_ranks(2, tiny_steps("100000", {"--zero", "1", "--checkpoint-dir", dir}));
  const bool started = ranks[0]->wait_for_output("step     3/", std::chrono::seconds(60));
  INFO("rank 0 so far: " << ranks[0]->output_so_far() << "\nrank 1 so far: " << ranks[1]->output_so_far());
  REQUIRE(started);
  for (auto& r : ranks) ::kill(r->pid(), SIGTERM);
  const auto results = wait_all(ranks, std::chrono::seconds(60));
  INFO(results[0].output);
  for (const auto& r : results) CHECK(r.exit_code == 0);
  CHECK(results[0].output.find("SIGTERM: emergency checkpoint saved after step") != std::string::npos);
  const std::string latest = checkpoint::find_latest(dir);
  REQUIRE_FALSE(latest.empty());
  checkpoint::Reader r(latest);
  r.verify_all();
  CHECK(r.meta().step >= 3);
}

TEST_CASE("kill -9 of one rank of 4: the others fail within the timeout, --resume continues from the last checkpoint",
          "[checkpoint]") {
  TempDir d;
  const std::string dir = d.path + "/ck";
  auto ranks =
      start_train_ranks(4, tiny_steps("100000", {"--zero", "2", "--checkpoint-dir", dir, "--checkpoint-every", "5"}));
  const bool saved_one = ranks[0]->wait_for_output("step-00000005", std::chrono::seconds(60));
  INFO("rank 0 so far: " << ranks[0]->output_so_far());
  REQUIRE(saved_one);
  ::kill(ranks[2]->pid(), SIGKILL);
  const auto results = wait_all(ranks, std::chrono::seconds(60));
  for (int r : {0, 1, 3}) {
    INFO("rank " << r << ": "
                 << results[static_cast<size_t>(r)].output.substr(results[static_cast<size_t>(r)].output.size() > 1500
                                                                      ? results[static_cast<size_t>(r)].output.size() -
                                                                            1500
                                                                      : 0));
    CHECK(results[static_cast<size_t>(r)].exit_code != 0);
    CHECK_FALSE(results[static_cast<size_t>(r)].timed_out);
    CHECK(results[static_cast<size_t>(r)].seconds < 45);
    CHECK(results[static_cast<size_t>(r)].output.find("rank 2") != std::string::npos);  // the dead rank is named
  }
  const std::string latest = checkpoint::find_latest(dir);
  REQUIRE_FALSE(latest.empty());
  const int64_t saved = checkpoint::Reader(latest).meta().step;
  CHECK(saved >= 5);
  const auto again =
      train_raw(4, tiny_steps(std::to_string(saved + 2), {"--zero", "2", "--checkpoint-dir", dir, "--resume"}));
  INFO(again.output);
  CHECK(again.exit_code == 0);
  CHECK(again.output.find("resume: loaded " + latest) != std::string::npos);
}

TEST_CASE("dtrain-ckpt verifies and exports, train_gpt --init-from starts from the exported weights", "[checkpoint]") {
  TempDir d;
  const std::string a = d.path + "/a", b = d.path + "/b", hf = d.path + "/gpt2.safetensors";
  const auto s = train(1, {"--checkpoint-dir", a, "--checkpoint-every", "10", "--stop-at", "10"});
  INFO(s.output);
  REQUIRE(s.exit_code == 0);
  auto tool = [](const std::vector<std::string>& args) {
    std::vector<std::string> argv = {DTRAIN_CKPT};
    argv.insert(argv.end(), args.begin(), args.end());
    Process p(argv, {});
    return p.wait(std::chrono::seconds(60));
  };
  const auto info = tool({"info", a});
  CHECK(info.exit_code == 0);
  CHECK(info.output.find("step 10, saved by 1 rank(s) at ZeRO stage 0") != std::string::npos);
  CHECK(info.output.find("precision: f32 parameters, tensors stored f32") != std::string::npos);
  CHECK(tool({"verify", a}).exit_code == 0);
  const auto ex = tool({"export", a, hf});
  INFO(ex.output);
  REQUIRE(ex.exit_code == 0);
  // lr 0: the first step changes nothing, so the step-1 checkpoint holds the imported weights.
  const auto init = train(1, {"--init-from", hf, "--lr", "0", "--checkpoint-dir", b, "--stop-at", "1"});
  INFO(init.output);
  REQUIRE(init.exit_code == 0);
  checkpoint::Reader ra(a + "/step-00000010"), rb(b + "/step-00000001");
  for (const auto& n : ra.tensor_names()) {
    if (n.find(".exp_avg") != std::string::npos) continue;
    INFO(n);
    CHECK_CLOSE(rb.read_full(n), ra.read_full(n), 0.0);
  }
  // A damaged file: verify exits 1 naming it.
  const std::string file = a + "/step-00000010/rank-00000.safetensors";
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x7f');
  }
  const auto bad = tool({"verify", a});
  CHECK(bad.exit_code == 1);
  CHECK(bad.output.find(file) != std::string::npos);
}
