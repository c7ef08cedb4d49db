// Test-side helpers for the engine's multi-process tests: start one worker
// program per rank on loopback, and assert the "dp_check <name> <value>
// <limit>" lines every rank prints (value <= limit passes; a NaN or an
// unparsable number fails). Shared by test_data_parallel.cpp (dp_worker) and
// test_mixed_engine.cpp (mixed_worker).
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "comm/process_util.h"

namespace dtrain::testing {

struct RankCheck {
  std::string name;
  double value = NAN, limit = NAN;  // unparsable -> NaN -> the check fails
};

// strtod, unlike operator>>, reads "nan" and "inf" as what they are.
inline double parse_check_number(const std::string& word) {
  char* end = nullptr;
  const double v = std::strtod(word.c_str(), &end);
  return (word.empty() || *end != '\0') ? NAN : v;
}

inline std::vector<RankCheck> parse_checks(const std::string& out) {
  std::vector<RankCheck> checks;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("dp_check ", 0) != 0) continue;
    std::istringstream ls(line.substr(9));
    RankCheck c;
    std::string value, limit;
    ls >> c.name >> value >> limit;
    c.value = parse_check_number(value);
    c.limit = parse_check_number(limit);
    checks.push_back(c);
  }
  return checks;
}

// Every rank's checks: at least min_checks on each, all within their limit.
inline void check_every_rank(const std::vector<ProcessResult>& results, size_t min_checks) {
  for (size_t r = 0; r < results.size(); ++r) {
    const auto checks = parse_checks(results[r].output);
    INFO("rank " << r);
    REQUIRE(checks.size() >= min_checks);
    for (const auto& c : checks) {
      INFO("rank " << r << ": " << c.name << " = " << c.value << " (limit " << c.limit << ")");
      CHECK(c.value <= c.limit);
    }
  }
}

// `world` copies of `worker args...` with a launcher's environment (rank,
// world size, a free loopback port); each one's exit, output and time.
inline std::vector<ProcessResult> run_worker_ranks(const std::string& worker, int world,
                                                   const std::vector<std::string>& args, double limit_s) {
  const int port = dtrain::comm::net::pick_free_port();
  std::vector<std::unique_ptr<Process>> ranks;
  for (int r = 0; r < world; ++r) {
    Env env = job_env(r, world, port);
    env["DTRAIN_TIMEOUT_S"] = "60";
    std::vector<std::string> argv = {worker};
    argv.insert(argv.end(), args.begin(), args.end());
    ranks.push_back(std::make_unique<Process>(argv, env));
  }
  std::vector<ProcessResult> out;
  out.reserve(ranks.size());
  for (auto& p : ranks) out.push_back(p->wait(std::chrono::milliseconds(static_cast<int64_t>(limit_s * 1000))));
  return out;
}

// Runs the ranks, requires each to exit 0 in time, prints rank 0's output and asserts every rank's checks.
inline void run_worker_and_check(const std::string& worker, int world, const std::vector<std::string>& args,
                                 size_t min_checks) {
  const auto results = run_worker_ranks(worker, world, args, 120);
  for (size_t r = 0; r < results.size(); ++r) {
    INFO("rank " << r << " output:\n" << results[r].output);
    REQUIRE_FALSE(results[r].timed_out);
    REQUIRE(results[r].exit_code == 0);
  }
  std::printf("---- world size %d (rank 0) ----\n%s", world, results[0].output.c_str());
  check_every_rank(results, min_checks);
}

}  // namespace dtrain::testing
