// dtrain-bench's suite registry: each suite (comm, later gemm, hbm, train)
// is a BenchSuite registered by a static DTRAIN_REGISTER_BENCH_SUITE in its
// own .cpp; bench_main.cpp parses --suite and the shared options.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace dtrain::bench {

// Options every suite understands.
struct CommonOptions {
  bool quick = false;       // a short sweep (minutes become seconds)
  std::string metrics_out;  // JSON Lines file; empty: none
};

// Appends one JSON object per line to --metrics-out (written aside then
// renamed on close, so a reader never sees a half-written file).
class MetricsWriter {
 public:
  explicit MetricsWriter(const std::string& path);
  ~MetricsWriter();
  bool enabled() const { return !path_.empty(); }
  void write(const nlohmann::json& object);

 private:
  std::string path_;
  std::string tmp_path_;
  std::ofstream out_;
};

class BenchSuite {
 public:
  virtual ~BenchSuite() = default;
  virtual const char* name() const = 0;
  virtual const char* description() const = 0;
  // Adds the suite's own flags to the program's command line.
  virtual void add_options(CLI::App& app) = 0;
  // Runs; returns the process exit code (non-zero when results were wrong).
  virtual int run(const CommonOptions& common, MetricsWriter& metrics) = 0;
};

std::vector<std::unique_ptr<BenchSuite>>& suite_registry();

struct SuiteRegistration {
  explicit SuiteRegistration(std::unique_ptr<BenchSuite> suite) { suite_registry().push_back(std::move(suite)); }
};

#define DTRAIN_REGISTER_BENCH_SUITE(Type)                                            \
  static const ::dtrain::bench::SuiteRegistration dtrain_bench_registration_##Type { \
    std::make_unique<Type>()                                                         \
  }

}  // namespace dtrain::bench
