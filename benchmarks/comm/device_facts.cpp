// Device facts from /proc, uname and (when dtrain is built with CUDA) the
// CUDA runtime and NCCL. Missing facts are null, never guessed.
#include "device_facts.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "dtrain/comm.h"

#ifdef DTRAIN_WITH_CUDA
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace dtrain::bench {
namespace {

// The value after `key` and its ':' or '=' on the first line of `path` that
// starts with `key`, without surrounding quotes.
std::string proc_field(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0) continue;
    const size_t colon = line.find_first_of(":=");
    if (colon == std::string::npos) continue;
    const size_t start = line.find_first_not_of(" \t\"", colon + 1);
    const size_t end = line.find_last_not_of(" \t\"");
    return start == std::string::npos || end < start ? "" : line.substr(start, end - start + 1);
  }
  return "";
}

nlohmann::json cpu_facts() {
  nlohmann::json cpu;
  cpu["model"] = proc_field("/proc/cpuinfo", "model name");
  cpu["logical_cores"] = std::thread::hardware_concurrency();
  cpu["threads_per_rank"] = cpu_threads_per_rank();
  const std::string flags = " " + proc_field("/proc/cpuinfo", "flags") + " ";
  cpu["isa"] = flags.find(" avx512f ") != std::string::npos ? "avx512"
               : flags.find(" avx2 ") != std::string::npos  ? "avx2"
                                                            : "baseline";
  const std::string mem_kb = proc_field("/proc/meminfo", "MemTotal");
  cpu["memory_bytes"] = mem_kb.empty() ? nlohmann::json(nullptr) : nlohmann::json(std::stoll(mem_kb) * 1024);
  return cpu;
}

#ifdef DTRAIN_WITH_CUDA
nlohmann::json cuda_facts() {
  nlohmann::json gpu;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
  gpu["count"] = count;
  int driver = 0, runtime = 0, nccl = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  ncclGetVersion(&nccl);
  gpu["driver_version"] = driver;
  gpu["cuda_runtime_version"] = runtime;
  gpu["nccl_version"] = nccl;
  gpu["devices"] = nlohmann::json::array();
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, d) != cudaSuccess) continue;
    int clock_khz = 0, mem_clock_khz = 0, bus_bits = 0;
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, d);
    cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, d);
    cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, d);
    nlohmann::json peers = nlohmann::json::array();
    for (int q = 0; q < count; ++q) {
      int can = 0;
      if (q != d) cudaDeviceCanAccessPeer(&can, d, q);
      peers.push_back(q == d || can != 0);
    }
    gpu["devices"].push_back({{"index", d},
                              {"name", p.name},
                              {"memory_bytes", p.totalGlobalMem},
                              {"multiprocessors", p.multiProcessorCount},
                              {"compute_capability", std::to_string(p.major) + "." + std::to_string(p.minor)},
                              {"sm_clock_mhz", clock_khz / 1000},
                              {"memory_clock_mhz", mem_clock_khz / 1000},
                              {"memory_bus_bits", bus_bits},
                              {"peer_access", peers}});
  }
  return gpu;
}
#endif

}  // namespace

int cpu_threads_per_rank() {
  if (const char* omp = std::getenv("OMP_NUM_THREADS")) {
    const int n = std::atoi(omp);
    if (n > 0) return n;
  }
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  const int local = comm::job_env_from_environment().local_world_size;
  return std::max(1, cores / std::max(1, local));
}

nlohmann::json device_facts(const Device& device) {
  nlohmann::json f;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  f["host"] = host;
  utsname u{};
  if (uname(&u) == 0) f["kernel"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
  const std::string os = proc_field("/etc/os-release", "PRETTY_NAME");
  f["os"] = os.empty() ? nlohmann::json(nullptr) : nlohmann::json(os);
  f["device"] = device.str();
  f["cpu"] = cpu_facts();
#ifdef DTRAIN_WITH_CUDA
  f["gpu"] = cuda_facts();
#else
  f["gpu"] = nullptr;
#endif
  return f;
}

}  // namespace dtrain::bench
