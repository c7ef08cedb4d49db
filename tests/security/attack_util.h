// Helpers of the attack trials: a live 2-rank training job to attack, what
// /proc says about its rank 0 (resident memory, threads, listening ports),
// and raw connections from chosen loopback source addresses.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "comm/process_util.h"

namespace dtrain::testing {

// A field of /proc/PID/status ("VmRSS" in kB, "Threads"); -1 when unreadable.
inline long proc_status(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::atol(line.c_str() + field.size() + 1);
  return -1;
}

// TCP ports a process listens on (from /proc/net/tcp and its socket inodes).
inline std::set<int> listening_ports(pid_t pid) {
  std::set<std::string> inodes;
  const std::string fd_dir = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* d = ::opendir(fd_dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      char target[256];
      const ssize_t n = ::readlink((fd_dir + "/" + e->d_name).c_str(), target, sizeof(target) - 1);
      if (n <= 0) continue;
      const std::string t(target, static_cast<size_t>(n));
      if (t.rfind("socket:[", 0) == 0) inodes.insert(t.substr(8, t.size() - 9));
    }
    ::closedir(d);
  }
  std::set<int> ports;
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string sl, local, remote, state, queues, timer, retr, uid, timeout, inode;
    ss >> sl >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >> inode;
    if (state == "0A" && inodes.count(inode)) ports.insert(std::stoi(local.substr(local.find(':') + 1), nullptr, 16));
  }
  return ports;
}

// A TCP connection to 127.0.0.1:port from `source` (any 127.x.y.z address
// works on loopback), or -1. With `reset_on_close` closing sends a reset and
// leaves no TIME_WAIT behind, so a churn does not run out of local ports.
inline int connect_from(const std::string& source, int port, bool reset_on_close = true) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{2, 0};  // connect() gives up after 2 s (a full backlog)
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (reset_on_close) {
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  }
  sockaddr_in from{};
  from.sin_family = AF_INET;
  ::inet_pton(AF_INET, source.c_str(), &from.sin_addr);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// "ip:port" of a socket's own end.
inline std::string local_name(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  char ip[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &a.sin_addr, ip, sizeof(ip));
  return std::string(ip) + ":" + std::to_string(ntohs(a.sin_port));
}

// A 2-rank training job (security_worker train) on loopback. Rank r's
// environment can be changed before start(); rank 1 may start later.
class TrainingJob {
 public:
  explicit TrainingJob(double max_seconds = 120) : max_seconds_(max_seconds) {
    char path[] = "/tmp/dtrain_security_stop_XXXXXX";
    const int fd = ::mkstemp(path);
    ::close(fd);
    ::unlink(path);
    stop_file_ = path;
    store_port_ = comm::net::pick_free_port();
    for (int r = 0; r < 2; ++r) {
      env_[r] = job_env(r, 2, store_port_);
      env_[r]["DTRAIN_TIMEOUT_S"] = "20";
    }
  }
  ~TrainingJob() { ::unlink(stop_file_.c_str()); }

  Env& env(int rank) { return env_[rank]; }
  int store_port() const { return store_port_; }
  void start(int rank) {
    started_[rank] = std::chrono::steady_clock::now();
    ranks_[rank] = std::make_unique<Process>(
        std::vector<std::string>{DTRAIN_SECURITY_WORKER, "train", stop_file_, std::to_string(max_seconds_)},
        env_[rank]);
  }
  Process& rank(int r) { return *ranks_[r]; }

  // Steps rank 0 has finished so far.
  int steps() const {
    const std::string out = ranks_[0]->output_so_far();
    int n = 0;
    for (size_t at = out.find("step "); at != std::string::npos; at = out.find("step ", at + 5)) ++n;
    return n;
  }
  bool wait_for_steps(int n, std::chrono::milliseconds limit) const {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      if (steps() >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  // Steps per second of rank 0 over `window`, sampling its resident memory
  // (max, kB) and thread count (max) meanwhile.
  struct Window {
    double steps_per_s = 0;
    long max_rss_kb = 0;
    long max_threads = 0;
  };
  Window measure(std::chrono::milliseconds window) const {
    Window w;
    const pid_t pid = ranks_[0]->pid();
    const int s0 = steps();
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < window) {
      w.max_rss_kb = std::max(w.max_rss_kb, proc_status(pid, "VmRSS"));
      w.max_threads = std::max(w.max_threads, proc_status(pid, "Threads"));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    w.steps_per_s = (steps() - s0) / secs;
    return w;
  }

  // Asks the ranks to stop and waits up to `limit` from now for each
  // (Process::wait counts from the process's start).
  std::vector<ProcessResult> stop_and_wait(std::chrono::milliseconds limit) {
    std::ofstream(stop_file_) << "stop";
    const auto now = std::chrono::steady_clock::now();
    std::vector<ProcessResult> out;
    for (int r = 0; r < 2; ++r) {
      const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - started_[r]);
      out.push_back(ranks_[r] ? ranks_[r]->wait(limit + age) : ProcessResult{});
    }
    return out;
  }

 private:
  double max_seconds_;
  std::string stop_file_;
  int store_port_ = 0;
  Env env_[2];
  std::unique_ptr<Process> ranks_[2];
  std::chrono::steady_clock::time_point started_[2];
};

inline std::string dump(const std::vector<ProcessResult>& rs) {
  std::string s;
  for (size_t r = 0; r < rs.size(); ++r)
    s += "---- rank " + std::to_string(r) + " (exit " + std::to_string(rs[r].exit_code) + ")\n" + rs[r].output + "\n";
  return s;
}

}  // namespace dtrain::testing
