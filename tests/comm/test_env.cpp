// Job environment parsing: torchrun, Slurm, Open MPI, overrides, bad values.
#include <catch2/catch.hpp>
#include <cstdlib>

#include "dtrain/comm/init.h"
#include "dtrain/error.h"

using namespace dtrain::comm;

namespace {
// Sets variables for one test and restores a clean slate afterwards.
struct ScopedEnv {
  std::vector<std::string> names;
  ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> vars) {
    clear();
    for (auto& [k, v] : vars) {
      ::setenv(k, v, 1);
      names.push_back(k);
    }
  }
  ~ScopedEnv() { clear(); }
  static void clear() {
    for (const char* k : {"RANK",
                          "WORLD_SIZE",
                          "LOCAL_RANK",
                          "LOCAL_WORLD_SIZE",
                          "MASTER_ADDR",
                          "MASTER_PORT",
                          "SLURM_PROCID",
                          "SLURM_NTASKS",
                          "SLURM_LOCALID",
                          "SLURM_NTASKS_PER_NODE",
                          "SLURM_STEP_TASKS_PER_NODE",
                          "SLURM_TASKS_PER_NODE",
                          "SLURM_LAUNCH_NODE_IPADDR",
                          "SLURM_NODELIST",
                          "SLURM_JOB_NODELIST",
                          "OMPI_COMM_WORLD_RANK",
                          "OMPI_COMM_WORLD_SIZE",
                          "OMPI_COMM_WORLD_LOCAL_RANK",
                          "OMPI_COMM_WORLD_LOCAL_SIZE",
                          "DTRAIN_TIMEOUT_S"})
      ::unsetenv(k);
  }
};
}  // namespace

TEST_CASE("job environment from torchrun variables, with explicit overrides", "[comm][env]") {
  ScopedEnv env({{"RANK", "3"},
                 {"WORLD_SIZE", "8"},
                 {"LOCAL_RANK", "1"},
                 {"LOCAL_WORLD_SIZE", "2"},
                 {"MASTER_ADDR", "10.0.0.5"},
                 {"MASTER_PORT", "1234"}});
  JobEnv e = job_env_from_environment();
  CHECK(e.source == "torchrun");
  CHECK(e.rank == 3);
  CHECK(e.world_size == 8);
  CHECK(e.local_rank == 1);
  CHECK(e.local_world_size == 2);
  CHECK(e.master_addr == "10.0.0.5");
  CHECK(e.master_port == 1234);
  InitOptions o;
  o.rank = 0;
  o.master_port = 999;
  e = job_env_from_environment(o);
  CHECK(e.rank == 0);
  CHECK(e.master_port == 999);
}

TEST_CASE("job environment from Slurm and Open MPI", "[comm][env]") {
  {
    ScopedEnv env({{"SLURM_PROCID", "5"},
                   {"SLURM_NTASKS", "8"},
                   {"SLURM_LOCALID", "1"},
                   {"SLURM_STEP_TASKS_PER_NODE", "4(x2)"},
                   {"SLURM_NODELIST", "gpu[07-08]"}});
    JobEnv e = job_env_from_environment();
    CHECK(e.source == "slurm");
    CHECK(e.rank == 5);
    CHECK(e.world_size == 8);
    CHECK(e.local_rank == 1);
    CHECK(e.local_world_size == 4);
    CHECK(e.master_addr == "gpu07");
  }
  {
    ScopedEnv env({{"SLURM_PROCID", "0"},
                   {"SLURM_NTASKS", "2"},
                   {"SLURM_LAUNCH_NODE_IPADDR", "192.168.1.9"},
                   {"SLURM_NODELIST", "x1"}});
    CHECK(job_env_from_environment().master_addr == "192.168.1.9");
  }
  {
    ScopedEnv env({{"OMPI_COMM_WORLD_RANK", "2"},
                   {"OMPI_COMM_WORLD_SIZE", "4"},
                   {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                   {"OMPI_COMM_WORLD_LOCAL_SIZE", "1"},
                   {"MASTER_ADDR", "h0"}});
    JobEnv e = job_env_from_environment();
    CHECK(e.source == "openmpi");
    CHECK(e.rank == 2);
    CHECK(e.world_size == 4);
    CHECK(e.master_addr == "h0");
  }
  CHECK(first_host_of_nodelist("a,b") == "a");
  CHECK(first_host_of_nodelist("node[1,3-5],other") == "node1");
  CHECK(first_host_of_nodelist("pre[10-12]suf") == "pre10suf");
}

TEST_CASE("bad environment values are errors naming the variable", "[comm][env]") {
  {
    ScopedEnv env({{"RANK", "two"}, {"WORLD_SIZE", "4"}});
    CHECK_THROWS_WITH(job_env_from_environment(), Catch::Contains("RANK='two'"));
  }
  {
    ScopedEnv env({{"RANK", "4"}, {"WORLD_SIZE", "4"}});
    CHECK_THROWS_WITH(job_env_from_environment(), Catch::Contains("rank 4 is outside [0, 4)"));
  }
  {
    ScopedEnv env({{"DTRAIN_TIMEOUT_S", "-1"}});
    CHECK_THROWS_WITH(timeout_from_environment(), Catch::Contains("DTRAIN_TIMEOUT_S"));
  }
  {
    ScopedEnv env({{"DTRAIN_TIMEOUT_S", "2.5"}});
    CHECK(timeout_from_environment() == std::chrono::milliseconds(2500));
  }
  ScopedEnv env({});
  CHECK(timeout_from_environment() == std::chrono::seconds(300));
  CHECK(job_env_from_environment().world_size == 1);
}
