// dtrain-bench's suite registry and what every suite is handed: the options,
// the job's communicator, the report it fills in, a progress line and the
// time bounds. Each suite (kernels, comm, train, stragglers) is a BenchSuite
// registered by a static DTRAIN_REGISTER_BENCH_SUITE in its own .cpp;
// bench_main.cpp parses the command line and runs the suites in order.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dtrain/comm.h"
#include "report.h"

namespace dtrain::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Options every suite understands.
struct CommonOptions {
  bool quick = false;       // a short run (minutes become seconds)
  std::string out_dir;      // report.json goes here; empty: no report
  std::string metrics_out;  // JSON Lines file; empty: none
  std::string device = "auto";
  double row_seconds = 0;    // a row (one size, one shape) is cut short past this; 0: by --quick
  double suite_seconds = 0;  // a suite skips its remaining rows past this; 0: by --quick
  double row_limit() const { return row_seconds > 0 ? row_seconds : (quick ? 2.0 : 15.0); }
  double suite_limit() const { return suite_seconds > 0 ? suite_seconds : (quick ? 40.0 : 600.0); }
};

// Appends one JSON object per line to --metrics-out (written aside then
// renamed on close, so a reader never sees a half-written file).
class MetricsWriter {
 public:
  explicit MetricsWriter(const std::string& path);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  bool enabled() const { return !path_.empty(); }
  void write(const nlohmann::json& object);

 private:
  std::string path_;
  std::string tmp_path_;
  std::ofstream out_;
};

// The progress display: rank 0 prints one line per step to stderr, with the
// time since the run started, so a run of minutes shows where it is.
class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled), start_(Clock::now()) {}
  void say(const std::string& suite, const std::string& what) const;

 private:
  bool enabled_;
  Clock::time_point start_;
};

// `row` with `extra`'s fields added (a metrics line is a report row plus its suite).
inline nlohmann::json with_fields(nlohmann::json row, const nlohmann::json& extra) {
  row.update(extra);
  return row;
}

// Everything a suite runs with. `device` is where kernels and training run
// (cuda:LOCAL_RANK on a GPU machine, else cpu).
struct BenchContext {
  const CommonOptions& common;
  std::shared_ptr<comm::Communicator> comm_shared;  // for parallel::DataParallel
  comm::Communicator& comm;
  Device device;
  Report& report;
  MetricsWriter& metrics;
  const Progress& progress;
  const nlohmann::json& facts;     // device_facts() of this rank
  std::vector<std::string> hosts;  // every rank's host name, by rank
  bool lead() const { return comm.rank() == 0; }
};

class BenchSuite {
 public:
  virtual ~BenchSuite() = default;
  virtual const char* name() const = 0;
  virtual const char* description() const = 0;
  // Adds the suite's own flags to the program's command line.
  virtual void add_options(CLI::App& app) = 0;
  // Runs on every rank (collectively); records rows and checks in the report.
  virtual void run(BenchContext& ctx) = 0;
};

std::vector<std::unique_ptr<BenchSuite>>& suite_registry();

struct SuiteRegistration {
  explicit SuiteRegistration(std::unique_ptr<BenchSuite> suite) { suite_registry().push_back(std::move(suite)); }
};

#define DTRAIN_REGISTER_BENCH_SUITE(Type)                                            \
  static const ::dtrain::bench::SuiteRegistration dtrain_bench_registration_##Type { \
    std::make_unique<Type>()                                                         \
  }

// Every rank's `mine`, by rank (an all-gather: every rank must call it).
std::vector<double> gather_from_ranks(comm::Communicator& comm, double mine);

// The median of `x` (the upper one of an even count); 0 when empty.
double median_of(std::vector<double> x);

// Times `call` up to `max_calls` times, stopping early once `max_seconds` have
// passed (at least one call). Local: for work that involves no other rank.
struct TimedCalls {
  std::vector<double> seconds;  // one per call
  bool cut_short = false;       // stopped by the time bound before max_calls
  double median() const;
  double best() const;
};
TimedCalls time_calls(const std::function<void()>& call, int max_calls, double max_seconds);

// The DTRAIN_BENCH_SLOW_RANK test hook ("R" or "R:FACTOR", default factor 4):
// on rank R every straggler measurement takes FACTOR times as long, so the
// tests can check that a slow rank is named. 1.0 everywhere else.
double slow_rank_factor(int rank);

}  // namespace dtrain::bench
