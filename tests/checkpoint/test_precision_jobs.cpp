// Checkpoints of bf16 and f16 jobs, as real processes: train_gpt --precision
// stopped and resumed continues bitwise as the job that never stopped
// (losses, f32 masters and moments, f16 loss scale) at world sizes 1 and 2
// and ZeRO stages 0 and 3 (and 1 / 2 at world 2); a bf16 checkpoint resharded to worlds 1 and 3
// (bitwise the same tensors, training continues); resuming in another
// precision (announced), a bf16 run started from the GPT-2 export of another
// (weights rounded), and an f16 checkpoint whose loss-scaler state is
// missing (refused for f16, accepted for bf16).
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <tuple>

#include "check_close.h"
#include "comm/process_util.h"
#include "dtrain/checkpoint.h"
#include "job_support.h"
#include "test_support.h"

using namespace dtrain;
using namespace dtrain::testing;
using namespace dtrain::testing::ckpt_jobs;
namespace fs = std::filesystem;

namespace {

// One numeric field of every per-step record of a --metrics-out file.
std::vector<double> metric(const std::string& metrics, const std::string& key) {
  std::vector<double> out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss") && j.contains(key)) out.push_back(j[key].get<double>());
  }
  return out;
}

std::vector<std::string> with_precision(const std::string& precision, std::vector<std::string> args) {
  args.insert(args.end(), {"--precision", precision});
  if (precision == "f16") args.insert(args.end(), {"--loss-scale-window", "3"});  // the scale moves within 10 steps
  return args;
}

void require_ok(const ProcessResult& r) {
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
}

}  // namespace

TEST_CASE("train_gpt resumes a bf16 / f16 run exactly: 10 + 10 steps equal 20 straight, bitwise", "[checkpoint]") {
  const auto [precision, world, stage] = GENERATE(table<std::string, int, std::string>({{"bf16", 1, "0"},
                                                                                        {"bf16", 1, "3"},
                                                                                        {"bf16", 2, "0"},
                                                                                        {"bf16", 2, "3"},
                                                                                        {"bf16", 2, "1"},
                                                                                        {"f16", 2, "2"},
                                                                                        {"f16", 1, "0"},
                                                                                        {"f16", 1, "3"},
                                                                                        {"f16", 2, "0"},
                                                                                        {"f16", 2, "3"}}));
  INFO(precision << " at world " << world << ", ZeRO stage " << stage);
  TempDir d;
  const std::string straight = d.path + "/straight", split = d.path + "/split";
  require_ok(
      train(world, with_precision(precision, {"--zero", stage, "--checkpoint-dir", straight, "--checkpoint-every", "10",
                                              "--metrics-out", d.path + "/a.jsonl"})));
  require_ok(train(world, with_precision(precision, {"--zero", stage, "--checkpoint-dir", split, "--checkpoint-every",
                                                     "10", "--stop-at", "10", "--metrics-out", d.path + "/b1.jsonl"})));
  const auto b2 =
      train(world, with_precision(precision, {"--zero", stage, "--checkpoint-dir", split, "--checkpoint-every", "10",
                                              "--resume", "--metrics-out", d.path + "/b2.jsonl"}));
  require_ok(b2);
  CHECK(b2.output.find("resume: loaded " + split + "/step-00000010") != std::string::npos);
  CHECK(b2.output.find("resumed in") == std::string::npos);  // same precision: nothing converted

  split_equals_straight(d.path, straight, split);

  checkpoint::Reader mid(split + "/step-00000010"), a(straight + "/step-00000020"), b(split + "/step-00000020");
  CHECK(b.meta().param_dtype == precision);
  CHECK(b.meta().optimizer_steps == a.meta().optimizer_steps);
  if (precision == "f16") {
    const auto sa = metric(d.path + "/a.jsonl", "loss_scale");
    auto sb = metric(d.path + "/b1.jsonl", "loss_scale");
    const auto sb2 = metric(d.path + "/b2.jsonl", "loss_scale");
    sb.insert(sb.end(), sb2.begin(), sb2.end());
    REQUIRE(sa.size() == 20);
    CHECK_CLOSE(sb, sa, 0.0);
    // The saved state is not the initial one, so losing it would show.
    REQUIRE(mid.meta().has_loss_scaler);
    CHECK((mid.meta().loss_scaler.scale != 65536.0f || mid.meta().loss_scaler.good_steps != 0));
    REQUIRE(b.meta().has_loss_scaler);
    CHECK(b.meta().loss_scaler.scale == a.meta().loss_scaler.scale);
    CHECK(b.meta().loss_scaler.good_steps == a.meta().loss_scaler.good_steps);
    CHECK(b.meta().loss_scaler.skipped_steps == a.meta().loss_scaler.skipped_steps);
    CHECK(b.meta().optimizer_steps == 20 - b.meta().loss_scaler.skipped_steps);  // overflow steps do not count
  } else {
    CHECK(b.meta().optimizer_steps == 20);
    CHECK_FALSE(b.meta().has_loss_scaler);
  }
}

TEST_CASE("a world-2 ZeRO-3 bf16 checkpoint loads at world 1 and world 3, bitwise, and training continues",
          "[checkpoint]") {
  TempDir d;
  const std::string src = d.path + "/w2";
  // kTiny with a global batch of 12 (it splits over 1, 2 and 3 ranks), in bf16.
  auto args = [&](std::vector<std::string> more) {
    std::vector<std::string> all = kTiny;
    for (size_t i = 0; i + 1 < all.size(); ++i) {
      if (all[i] == "--batch") all[i + 1] = "12";
    }
    all.insert(all.end(), {"--precision", "bf16"});
    all.insert(all.end(), more.begin(), more.end());
    return all;
  };
  require_ok(
      train_raw(2, args({"--zero", "3", "--checkpoint-dir", src, "--checkpoint-every", "10", "--stop-at", "10"})));
  const std::string ck = src + "/step-00000010";
  REQUIRE(checkpoint::Reader(ck).meta().param_dtype == "bf16");

  resave(1, ck, d.path + "/w1", 0);
  resave(3, ck, d.path + "/w3", 1);
  same_tensors(ck, d.path + "/w1/step-00000010");
  same_tensors(ck, d.path + "/w3/step-00000010");
  CHECK(checkpoint::Reader(d.path + "/w3/step-00000010").files().size() == 3);
  CHECK(checkpoint::Reader(d.path + "/w1/step-00000010").meta().param_dtype == "bf16");

  require_ok(
      train_raw(2, args({"--zero", "3", "--checkpoint-dir", src, "--resume", "--metrics-out", d.path + "/c2.jsonl"})));
  require_ok(train_raw(1, args({"--checkpoint-dir", src, "--resume", "--metrics-out", d.path + "/c1.jsonl"})));
  require_ok(
      train_raw(3, args({"--zero", "2", "--checkpoint-dir", src, "--resume", "--metrics-out", d.path + "/c3.jsonl"})));
  const auto l2 = losses(d.path + "/c2.jsonl"), l1 = losses(d.path + "/c1.jsonl"), l3 = losses(d.path + "/c3.jsonl");
  REQUIRE(l2.size() == 10);
  // The first step starts from the same bf16 parameters: the same loss to
  // f32 rounding of the forward. Later steps differ by the reduction order
  // of f32 gradients, which can move a bf16 rounding: bf16 tolerance.
  CHECK_CLOSE(slice(l1, 0, 1), slice(l2, 0, 1), 1e-5);
  CHECK_CLOSE(slice(l3, 0, 1), slice(l2, 0, 1), 1e-5);
  CHECK_CLOSE(l1, l2, 1e-3);
  CHECK_CLOSE(l3, l2, 1e-3);
}

TEST_CASE("train_gpt resumes an f32 checkpoint in bf16 and a bf16 one in f32, saying what it converted",
          "[checkpoint]") {
  TempDir d;
  const std::string f32 = d.path + "/f32", bf16 = d.path + "/bf16";
  require_ok(train(1, {"--checkpoint-dir", f32, "--checkpoint-every", "10", "--stop-at", "10"}));
  require_ok(
      train(1, {"--precision", "bf16", "--checkpoint-dir", bf16, "--checkpoint-every", "10", "--stop-at", "10"}));
  const auto up =
      train(1, {"--precision", "bf16", "--checkpoint-dir", f32, "--resume", "--metrics-out", d.path + "/up.jsonl"});
  require_ok(up);
  CHECK(up.output.find("resume: checkpoint saved in f32, resumed in bf16: its f32 parameters become the f32 master "
                       "weights") != std::string::npos);
  CHECK(losses(d.path + "/up.jsonl").size() == 10);
  const auto down = train(1, {"--checkpoint-dir", bf16, "--resume", "--metrics-out", d.path + "/down.jsonl"});
  require_ok(down);
  CHECK(down.output.find("resume: checkpoint saved in bf16, resumed in f32: its f32 master weights become the f32 "
                         "parameters") != std::string::npos);
  CHECK(losses(d.path + "/down.jsonl").size() == 10);
  CHECK(checkpoint::Reader(f32 + "/step-00000010").meta().param_dtype == "f32");
  CHECK(checkpoint::Reader(bf16 + "/step-00000010").meta().param_dtype == "bf16");

  // dtrain-ckpt export of the bf16 run (its f32 masters), then a bf16 run
  // --init-from it with lr 0: its masters are the exported values rounded to bf16.
  const std::string hf = d.path + "/gpt2.safetensors", init = d.path + "/init";
  Process tool({DTRAIN_CKPT, "export", bf16, hf}, {});
  require_ok(tool.wait(std::chrono::seconds(60)));
  require_ok(
      train(1, {"--precision", "bf16", "--init-from", hf, "--lr", "0", "--checkpoint-dir", init, "--stop-at", "1"}));
  checkpoint::Reader exported(bf16 + "/step-00000010"), started(init + "/step-00000001");
  for (const auto& n : exported.tensor_names()) {
    if (n.find(".exp_avg") != std::string::npos) continue;
    INFO(n);
    CHECK_CLOSE(started.read_full(n), cast_to(cast_to(exported.read_full(n), DType::bf16), DType::f32), 0.0);
  }
}

TEST_CASE("an f16 checkpoint without loss-scaler state cannot resume f16, but resumes bf16", "[checkpoint]") {
  TempDir d;
  const std::string dir = d.path + "/f16";
  require_ok(train(1, with_precision("f16", {"--checkpoint-dir", dir, "--checkpoint-every", "5", "--stop-at", "5"})));
  const std::string manifest = dir + "/step-00000005/manifest.json";
  {
    std::ifstream in(manifest);
    auto j = nlohmann::json::parse(in);
    REQUIRE(j["precision"].contains("loss_scaler"));
    j["precision"].erase("loss_scaler");
    std::ofstream(manifest) << j.dump(1);
  }
  const auto f16 = train(1, with_precision("f16", {"--checkpoint-dir", dir, "--resume"}));
  CHECK(f16.exit_code != 0);
  CHECK(f16.output.find("was saved from an f16 run (param_dtype f16) but holds no loss-scaler state") !=
        std::string::npos);
  CHECK(f16.output.find("resume with --precision bf16 or f32") != std::string::npos);
  const auto bf16 = train(1, {"--precision", "bf16", "--checkpoint-dir", dir, "--resume"});
  require_ok(bf16);
  CHECK(bf16.output.find("checkpoint saved in f16, resumed in bf16") != std::string::npos);
}
