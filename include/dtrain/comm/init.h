// Starting a job: where this process sits (rank, world) and the store that
// joins it to the others, read from the launcher's environment.
//
// Sources, first match wins, explicit InitOptions fields override each:
//   torchrun / dtrain-run: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
//   Slurm (srun):          SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE /
//   SLURM_STEP_TASKS_PER_NODE;
//                          master = MASTER_ADDR, else SLURM_LAUNCH_NODE_IPADDR, else the first host of SLURM_NODELIST
//   Open MPI (mpirun):     OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE; master = MASTER_ADDR
//   none:                  a single process (rank 0 of 1)
// Other variables: DTRAIN_AUTH_TOKEN (job secret), DTRAIN_TIMEOUT_S (one
// timeout for rendezvous and collectives, default 300), DTRAIN_DEBUG_COLLECTIVES.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "dtrain/comm/communicator.h"

namespace dtrain::comm {

// Environment variable names dtrain reads (one place, so they are greppable).
namespace env {
inline constexpr const char* kAuthToken = "DTRAIN_AUTH_TOKEN";
inline constexpr const char* kTimeoutS = "DTRAIN_TIMEOUT_S";
inline constexpr const char* kDebugCollectives = "DTRAIN_DEBUG_COLLECTIVES";
inline constexpr const char* kGlooAddr = "DTRAIN_GLOO_ADDR";
inline constexpr const char* kStoreBindAll = "DTRAIN_STORE_BIND_ALL";
// One network interface for Gloo and NCCL sockets (also sets NCCL_SOCKET_IFNAME).
inline constexpr const char* kIface = "DTRAIN_IFACE";
}  // namespace env

struct JobEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "default";  // "torchrun", "slurm", "openmpi", "default"
};

struct InitOptions {
  std::optional<int> rank, world_size, local_rank, local_world_size;
  std::optional<std::string> master_addr;
  std::optional<int> master_port;
  // Empty: DTRAIN_AUTH_TOKEN.
  std::string auth_token;
  // Non-empty: rendezvous through a FileStore in this directory instead of TCP.
  std::string file_store_path;
  // Host the store on every interface instead of MASTER_ADDR (or DTRAIN_STORE_BIND_ALL=1).
  bool bind_all_interfaces = false;
  CommOptions comm;  // timeout, desync checks, Gloo address, CUDA stream
};

// DTRAIN_TIMEOUT_S (seconds, may be fractional), default 300.
std::chrono::milliseconds timeout_from_environment();
// Parses the environment (see the table above); throws dtrain::Error on bad values.
JobEnv job_env_from_environment(const InitOptions& options = {});
// "node[03-05,7]" -> "node03", "a,b" -> "a": the first host of a Slurm node list.
std::string first_host_of_nodelist(const std::string& nodelist);

// Creates the store (rank 0 hosts it) and the world communicator, and keeps
// it as the process's default. Connection attempts retry with backoff and
// jitter until the timeout.
std::shared_ptr<Communicator> init_process_group(const InitOptions& options = {});
// The communicator init_process_group made; throws if there is none.
std::shared_ptr<Communicator> world();
bool is_initialized();
// Drops the default communicator (bounded teardown).
void destroy_process_group();

}  // namespace dtrain::comm
