// dtrain-bench: measures what a node delivers, one suite at a time.
//   dtrain-run --nproc-per-node 2 dtrain-bench --suite comm --quick --metrics-out comm.jsonl
#include <cstdio>

#include "bench_suite.h"
#include "dtrain/error.h"

// Only option setup runs outside the try below; what it can throw (bad_alloc) may end the program.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  using namespace dtrain::bench;
  CLI::App app{"dtrain-bench: node benchmarks (collectives first; see --suite)"};
  CommonOptions common;
  std::string suite_name;
  std::string names;
  for (auto& s : suite_registry()) names += std::string(names.empty() ? "" : ", ") + s->name();
  app.add_option("--suite", suite_name, "suite to run: " + names)->required();
  app.add_flag("--quick", common.quick, "short sweep");
  app.add_option("--metrics-out", common.metrics_out, "write results as JSON Lines to this file");
  for (auto& s : suite_registry()) s->add_options(app);
  CLI11_PARSE(app, argc, argv);
  for (auto& s : suite_registry()) {
    if (suite_name != s->name()) continue;
    try {
      MetricsWriter metrics(common.metrics_out);
      return s->run(common, metrics);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "dtrain-bench: %s\n", e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "dtrain-bench: unknown suite '%s' (known: %s)\n", suite_name.c_str(), names.c_str());
  return 2;
}
