// init_process_group: the job environment (torchrun, Slurm, Open MPI) and the
// default communicator.
#include "dtrain/comm/init.h"

#include <cstdlib>
#include <mutex>

#include "comm/communicator_impl.h"
#include "dtrain/error.h"

namespace dtrain::comm {

namespace {

std::optional<std::string> getenv_opt(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

int parse_int(const std::string& text, const char* name) {
  size_t used = 0;
  int value = 0;
  try {
    value = std::stoi(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  DTRAIN_CHECK(used == text.size() && !text.empty(), "environment variable ", name, "='", text, "' is not an integer");
  return value;
}

std::optional<int> env_int(const char* name) {
  if (auto v = getenv_opt(name)) return parse_int(*v, name);
  return std::nullopt;
}

std::mutex g_mutex;
std::shared_ptr<Communicator> g_world;
std::shared_ptr<Store> g_store;

}  // namespace

std::chrono::milliseconds timeout_from_environment() {
  auto v = getenv_opt(env::kTimeoutS);
  if (!v) return std::chrono::seconds(300);
  double seconds = 0;
  size_t used = 0;
  try {
    seconds = std::stod(*v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  DTRAIN_CHECK(used == v->size() && seconds > 0, "DTRAIN_TIMEOUT_S='", *v, "' must be a positive number of seconds");
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

std::string first_host_of_nodelist(const std::string& nodelist) {
  // Forms: "a", "a,b", "node[01-04]", "node[1,3-5],other", "pre[1-2]suf".
  std::string host;
  size_t i = 0;
  while (i < nodelist.size() && nodelist[i] != ',') {
    if (nodelist[i] == '[') {
      const size_t close = nodelist.find(']', i);
      DTRAIN_CHECK(close != std::string::npos, "cannot parse SLURM_NODELIST='", nodelist, "' (unclosed '[')");
      const std::string range = nodelist.substr(i + 1, close - i - 1);
      const size_t end = range.find_first_of(",-");
      host += range.substr(0, end);
      i = close + 1;
    } else {
      host += nodelist[i++];
    }
  }
  DTRAIN_CHECK(!host.empty(), "cannot parse SLURM_NODELIST='", nodelist, "'; set MASTER_ADDR instead");
  return host;
}

JobEnv job_env_from_environment(const InitOptions& o) {
  JobEnv e;
  if (getenv_opt("RANK") || getenv_opt("WORLD_SIZE")) {
    e.source = "torchrun";
    e.rank = env_int("RANK").value_or(0);
    e.world_size = env_int("WORLD_SIZE").value_or(1);
    e.local_rank = env_int("LOCAL_RANK").value_or(e.rank);
    e.local_world_size = env_int("LOCAL_WORLD_SIZE").value_or(e.world_size);
  } else if (getenv_opt("SLURM_PROCID") && getenv_opt("SLURM_NTASKS")) {
    e.source = "slurm";
    e.rank = *env_int("SLURM_PROCID");
    e.world_size = *env_int("SLURM_NTASKS");
    e.local_rank = env_int("SLURM_LOCALID").value_or(0);
    // SLURM_NTASKS_PER_NODE / SLURM_STEP_TASKS_PER_NODE look like "4" or "4(x2)".
    for (const char* name : {"SLURM_NTASKS_PER_NODE", "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"}) {
      if (auto v = getenv_opt(name)) {
        const size_t end = v->find_first_not_of("0123456789");
        if (end != 0) {
          e.local_world_size = parse_int(v->substr(0, end), name);
          break;
        }
      }
    }
    if (auto m = getenv_opt("MASTER_ADDR"))
      e.master_addr = *m;
    else if (auto ip = getenv_opt("SLURM_LAUNCH_NODE_IPADDR"))
      e.master_addr = *ip;
    else if (auto list = getenv_opt("SLURM_NODELIST"))
      e.master_addr = first_host_of_nodelist(*list);
    else if (auto list2 = getenv_opt("SLURM_JOB_NODELIST"))
      e.master_addr = first_host_of_nodelist(*list2);
  } else if (getenv_opt("OMPI_COMM_WORLD_RANK")) {
    e.source = "openmpi";
    e.rank = *env_int("OMPI_COMM_WORLD_RANK");
    e.world_size = env_int("OMPI_COMM_WORLD_SIZE").value_or(1);
    e.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK").value_or(0);
    e.local_world_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE").value_or(1);
  }
  if (e.source != "slurm") {
    if (auto m = getenv_opt("MASTER_ADDR")) e.master_addr = *m;
  }
  if (auto p = env_int("MASTER_PORT")) e.master_port = *p;

  if (o.rank) e.rank = *o.rank;
  if (o.world_size) e.world_size = *o.world_size;
  if (o.local_rank) e.local_rank = *o.local_rank;
  if (o.local_world_size) e.local_world_size = *o.local_world_size;
  if (o.master_addr) e.master_addr = *o.master_addr;
  if (o.master_port) e.master_port = *o.master_port;

  DTRAIN_CHECK(e.world_size >= 1, "world size must be >= 1, got ", e.world_size, " (from ", e.source, ")");
  DTRAIN_CHECK(e.rank >= 0 && e.rank < e.world_size, "rank ", e.rank, " is outside [0, ", e.world_size, ") (from ",
               e.source, ")");
  DTRAIN_CHECK(e.local_rank >= 0 && e.local_world_size >= 1 && e.local_rank < e.local_world_size, "local rank ",
               e.local_rank, " is outside [0, ", e.local_world_size, ") (from ", e.source, ")");
  DTRAIN_CHECK(e.master_port > 0 && e.master_port < 65536, "MASTER_PORT ", e.master_port, " is outside [1, 65535]");
  return e;
}

namespace {

// Rendezvous, first step: reaching the store. Rank 0 hosts it, so a client
// that cannot reach it knows which rank did not arrive; say so first, with
// the connection error as the cause.
// exit() with the world communicator still alive (no destroy_process_group,
// or a reference held elsewhere): say goodbye, so that peers still in a
// collective report "rank R left the job" rather than "rank R died".
void announce_exit_at_exit() {
  std::shared_ptr<Communicator> w;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    w = g_world;
  }
  if (w) announce_exit(*w);
}

std::shared_ptr<Store> connect_store(const TcpStoreOptions& so, int rank) {
  try {
    return std::make_shared<TcpStore>(so);
  } catch (const Error& e) {
    const std::string what = e.what();
    if (so.is_server || what.find("gave up connecting") == std::string::npos) throw;
    DTRAIN_THROW("rendezvous timed out after ", static_cast<double>(so.timeout.count()) / 1000.0, " s on rank ", rank,
                 ": rank 0 did not arrive (the store it hosts at ", so.host, ":", so.port,
                 " never accepted a connection). What to do: check that rank 0 was started and read its own output "
                 "for an error at start-up; check MASTER_ADDR/MASTER_PORT. Cause: ",
                 what);
  }
}

}  // namespace

std::shared_ptr<Communicator> init_process_group(const InitOptions& o) {
  std::lock_guard<std::mutex> lock(g_mutex);
  DTRAIN_CHECK(g_world == nullptr, "init_process_group was already called; call destroy_process_group first");
  const JobEnv e = job_env_from_environment(o);
  // --iface / DTRAIN_IFACE pins NCCL's sockets too (unless the user set NCCL's own variable).
  if (auto iface = getenv_opt(env::kIface)) ::setenv("NCCL_SOCKET_IFNAME", iface->c_str(), 0);
  CommOptions comm = o.comm;
  if (comm.timeout.count() <= 0) comm.timeout = timeout_from_environment();
  std::shared_ptr<Store> store;
  if (!o.file_store_path.empty()) {
    store = std::make_shared<FileStore>(o.file_store_path, comm.timeout);
  } else {
    TcpStoreOptions so;
    so.host = e.master_addr;
    so.port = e.master_port;
    so.is_server = e.rank == 0;
    so.bind_all_interfaces = o.bind_all_interfaces || getenv_opt(env::kStoreBindAll).value_or("0") == "1";
    so.rank = e.rank;
    so.timeout = comm.timeout;
    so.auth_token = o.auth_token;
    store = connect_store(so, e.rank);
  }
  g_store = store;
  g_world = std::make_shared<Communicator>(store, e.rank, e.world_size, comm);
  static const bool registered = std::atexit(announce_exit_at_exit) == 0;
  (void)registered;
  return g_world;
}

std::shared_ptr<Communicator> world() {
  std::lock_guard<std::mutex> lock(g_mutex);
  DTRAIN_CHECK(g_world != nullptr, "no default communicator: call dtrain::comm::init_process_group() first");
  return g_world;
}

bool is_initialized() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_world != nullptr;
}

void destroy_process_group() {
  std::shared_ptr<Communicator> w;
  std::shared_ptr<Store> s;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    w = std::move(g_world);
    s = std::move(g_store);
  }
  w.reset();  // communicator first: its threads use the store
  s.reset();
}

}  // namespace dtrain::comm
