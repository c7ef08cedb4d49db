// dtrain-bench: the node acceptance benchmark. One command tells whether the
// machines deliver what was advertised and how fast dtrain trains on them.
//
//   dtrain-bench --quick --out bench-out                       # one process
//   dtrain-run --nproc-per-node 8 dtrain-bench --out bench-out  # every GPU of a node
//   mpirun -np 2 dtrain-bench --suite comm --quick             # Open MPI's environment works too
//
// Suites run in order (kernels, comm, train, stragglers; --suite picks one),
// each bounded in time; every check gets a verdict, rank 0 prints the table
// and the overall line and writes DIR/report.json (benchmarks/report turns it
// into plots and a Markdown summary). Exit code: 0 when no check failed, 1 when
// one did, 2 on a usage error.
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "bench_suite.h"
#include "device_facts.h"
#include "dtrain/error.h"

#ifndef DTRAIN_VERSION
#define DTRAIN_VERSION "unknown"
#endif
#include "git_revision.h"  // generated at build time: DTRAIN_GIT_REVISION

namespace dtrain::bench {
namespace {

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void make_dir(const std::string& dir) {
  std::string path;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i < dir.size() && dir[i] != '/') continue;
    path = dir.substr(0, i);
    if (path.empty()) continue;
    DTRAIN_CHECK(::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST, "cannot create the --out folder '", path, "'");
  }
}

Device pick_device(const std::string& name) {
  const int local_rank = comm::job_env_from_environment().local_rank;
  if (name == "auto") return cuda_device_count() > local_rank ? Device::cuda(local_rank) : Device::cpu();
  const Device d = name == "cuda" ? Device::cuda(local_rank) : Device::parse(name);
  check_device_available(d);
  return d;
}

// Started by no launcher (no RANK, SLURM_PROCID or OMPI_COMM_WORLD_RANK): a
// job of one, rendezvousing through a private FileStore folder (no TCP store,
// so no job secret is needed); `folder` is set to remove it afterwards.
std::shared_ptr<comm::Communicator> join_job(std::string& folder) {
  if (comm::job_env_from_environment().source != "default") return comm::init_process_group();
  char tmpl[] = "/tmp/dtrain-bench-XXXXXX";
  DTRAIN_CHECK(::mkdtemp(tmpl) != nullptr, "cannot create a store folder under /tmp");
  folder = tmpl;
  comm::InitOptions o;
  o.rank = 0;
  o.world_size = 1;
  o.file_store_path = folder;
  return comm::init_process_group(o);
}

int run(const CommonOptions& common, const std::string& suite_name, const std::string& command_line) {
  const auto start = std::chrono::steady_clock::now();
  std::string store_folder;
  auto communicator = join_job(store_folder);
  comm::Communicator& c = *communicator;
  const Device device = pick_device(common.device);
  const nlohmann::json facts = device_facts(device);
  // Every rank's facts through the job's store: rank 0 reports them, the
  // stragglers suite names hosts.
  c.store()->set("bench/facts/" + std::to_string(c.rank()), facts.dump());
  std::vector<std::string> hosts;
  nlohmann::json ranks = nlohmann::json::array();
  for (int r = 0; r < c.size(); ++r) {
    ranks.push_back(nlohmann::json::parse(c.store()->get("bench/facts/" + std::to_string(r))));
    hosts.push_back(ranks.back()["host"].get<std::string>());
  }
  const bool lead = c.rank() == 0;
  Report report;
  MetricsWriter metrics(lead ? common.metrics_out : "");
  Progress progress(lead);
  BenchContext ctx{common, communicator, c, device, report, metrics, progress, facts, hosts};
  if (lead)
    std::printf("# dtrain-bench %s (%s): %d rank(s), %s on %s, %s\n", DTRAIN_VERSION, DTRAIN_GIT_REVISION, c.size(),
                device.str().c_str(), facts["host"].get<std::string>().c_str(), common.quick ? "quick" : "full");
  for (auto& s : suite_registry()) {
    if (suite_name != "all" && suite_name != s->name()) continue;
    progress.say(s->name(), std::string("start: ") + s->description());
    try {
      s->run(ctx);
    } catch (const std::exception& e) {
      // The run goes on: the suite is reported as failed, the next one starts.
      std::fprintf(stderr, "dtrain-bench: rank %d: suite %s failed: %s\n", c.rank(), s->name(), e.what());
      if (lead) report.add_check({s->name(), "suite ran to the end", 0, "", 0, "", 0, 0, true, e.what()});
    }
  }
  report.section("environment") = {{"dtrain_version", DTRAIN_VERSION},
                                   {"git_revision", DTRAIN_GIT_REVISION},
                                   {"command", command_line},
                                   {"started_at", utc_now()},
                                   {"suite", suite_name},
                                   {"quick", common.quick},
                                   {"row_seconds", common.row_limit()},
                                   {"suite_seconds", common.suite_limit()},
                                   {"world_size", c.size()},
                                   {"launcher", comm::job_env_from_environment().source},
                                   {"device", device.str()},
                                   {"ranks", ranks}};
  const std::string overall = report.overall();
  if (lead) {
    report.section("environment")["duration_s"] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    report.print(stdout);
    if (!common.out_dir.empty()) {
      make_dir(common.out_dir);
      report.write(common.out_dir + "/report.json");
      std::printf("# report: %s/report.json (plots: python3 benchmarks/report/dtrain_report.py bench %s)\n",
                  common.out_dir.c_str(), common.out_dir.c_str());
    }
  }
  communicator.reset();
  comm::destroy_process_group();
  if (!store_folder.empty()) std::filesystem::remove_all(store_folder);
  return overall == kVerdictFailed ? 1 : 0;
}

}  // namespace
}  // namespace dtrain::bench

// Only option setup runs outside the try below; what it can throw (bad_alloc) may end the program.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  using namespace dtrain::bench;
  CLI::App app{"dtrain-bench: does this node deliver what was advertised, and how fast does dtrain train on it"};
  CommonOptions common;
  std::string suite_name = "all";
  std::vector<std::string> names = {"all"};
  for (auto& s : suite_registry()) names.emplace_back(s->name());
  app.add_option("--suite", suite_name, "suite to run")->check(CLI::IsMember(names))->capture_default_str();
  app.add_flag("--quick", common.quick, "short run (under 2 minutes)");
  app.add_option("--out", common.out_dir, "write report.json into this folder");
  app.add_option("--metrics-out", common.metrics_out, "also write rows as JSON Lines to this file");
  app.add_option("--device", common.device, "auto (cuda:LOCAL_RANK when there is a GPU), cpu, cuda or cuda:N")
      ->capture_default_str();
  app.add_option("--row-seconds", common.row_seconds, "cut a row short past this (default 2 with --quick, else 15)");
  app.add_option("--suite-seconds", common.suite_seconds,
                 "skip a suite's remaining rows past this (default 40 with --quick, else 600)");
  for (auto& s : suite_registry()) s->add_options(app);
  CLI11_PARSE(app, argc, argv);
  std::string command_line;
  for (int i = 0; i < argc; ++i) command_line += std::string(i ? " " : "") + argv[i];
  try {
    return run(common, suite_name, command_line);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dtrain-bench: %s\n", e.what());
    return 1;
  }
}
