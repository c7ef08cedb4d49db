// What the checkpoint job tests share (test_jobs.cpp, test_precision_jobs.cpp):
// a temporary directory, train_gpt started as one process or under
// dtrain-run, ckpt_worker ranks, the losses of a --metrics-out file, and a
// bitwise comparison of every tensor of two checkpoints.
#pragma once

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "check_close.h"
#include "checkpoint_test_support.h"
#include "comm/process_util.h"
#include "dtrain/checkpoint.h"

namespace dtrain::testing::ckpt_jobs {

inline const std::vector<std::string> kTiny = {"--n-layer",       "1", "--n-embd",        "32", "--n-head",       "2",
                                               "--batch",         "8", "--seq-len",       "20", "--steps",        "20",
                                               "--eval-every",    "0", "--eval-problems", "2",  "--eval-batches", "1",
                                               "--sample-tokens", "0", "--warmup",        "2"};

// train_gpt at `world` ranks (1: no launcher) with exactly `args`.
inline ProcessResult train_raw(int world, const std::vector<std::string>& args, const Env& extra = {}) {
  std::vector<std::string> argv;
  if (world > 1) argv = {DTRAIN_RUN, "--nproc-per-node", std::to_string(world)};
  argv.push_back(DTRAIN_TRAIN_GPT);
  argv.insert(argv.end(), args.begin(), args.end());
  Env env = {{"OMP_NUM_THREADS", "1"}, {"DTRAIN_TIMEOUT_S", "30"}, {"WORLD_SIZE", "<unset>"}};
  for (const auto& [k, v] : extra) env[k] = v;
  Process p(argv, env);
  return p.wait(std::chrono::seconds(120));
}

inline ProcessResult train(int world, const std::vector<std::string>& args, const Env& extra = {}) {
  std::vector<std::string> all = kTiny;
  all.insert(all.end(), args.begin(), args.end());
  return train_raw(world, all, extra);
}

// ckpt_worker resave at `world` ranks, ZeRO `stage` and `precision` ("": the checkpoint's).
inline void resave(int world, const std::string& src, const std::string& dst, int stage,
                   const std::string& precision = "") {
  std::vector<std::string> args = {"resave", src, dst, std::to_string(stage)};
  if (!precision.empty()) args.push_back(precision);
  auto ranks = start_ranks(world, args, {{"DTRAIN_TIMEOUT_S", "30"}});
  const auto results = wait_all(ranks, std::chrono::seconds(60));
  for (const auto& r : results) {
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
  }
}

inline std::vector<double> losses(const std::string& metrics) {
  std::vector<double> out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(j["loss"].get<double>());
  }
  return out;
}

inline std::vector<double> slice(const std::vector<double>& v, size_t a, size_t b) {
  REQUIRE(v.size() >= b);
  return std::vector<double>(v.begin() + static_cast<std::ptrdiff_t>(a), v.begin() + static_cast<std::ptrdiff_t>(b));
}

// A job of 20 steps straight (losses in dir/a.jsonl, checkpoints under
// `straight`) against one stopped after 10 and resumed (dir/b1.jsonl and
// dir/b2.jsonl, `split`): the same losses and step-20 tensors, bitwise.
inline void split_equals_straight(const std::string& dir, const std::string& straight, const std::string& split) {
  const auto la = losses(dir + "/a.jsonl"), lb1 = losses(dir + "/b1.jsonl"), lb2 = losses(dir + "/b2.jsonl");
  REQUIRE(la.size() == 20);
  REQUIRE(lb1.size() == 10);
  REQUIRE(lb2.size() == 10);
  CHECK_CLOSE(lb1, slice(la, 0, 10), 0.0);
  CHECK_CLOSE(lb2, slice(la, 10, 20), 0.0);
  same_tensors(straight + "/step-00000020", split + "/step-00000020");
}

}  // namespace dtrain::testing::ckpt_jobs
