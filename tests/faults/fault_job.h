// Fault-injection helpers: a job of comm_worker ranks started as real
// processes, reaped all together (so each rank's exit time is when it
// exited, not when the harness got round to it), and two network
// namespaces joined by a veth pair for partitions.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "spawn_to_file.h"

namespace dtrain::faults {

using Clock = std::chrono::steady_clock;
using Env = std::map<std::string, std::string>;

struct RankProcess {
  pid_t pid = -1;
  std::string out_path;
  bool exited = false;
  int exit_code = -1;  // 128 + signal when killed
  Clock::time_point exited_at;

  std::string output() const { return testing::read_whole_file(out_path); }
};

// Starts argv with env added, stdout+stderr to a temp file.
inline RankProcess spawn(const std::vector<std::string>& argv, const Env& env) {
  testing::SpawnedProcess s = testing::spawn_to_file(argv, env, "/tmp/dtrain_fault_XXXXXX");
  RankProcess p;
  p.pid = s.pid;
  p.out_path = std::move(s.out_path);
  return p;
}

// Runs a command to completion (setup steps); returns its exit code and output.
inline int run_command(const std::vector<std::string>& argv, std::string* output = nullptr) {
  RankProcess p = spawn(argv, {});
  int status = 0;
  ::waitpid(p.pid, &status, 0);
  if (output) *output = p.output();
  ::unlink(p.out_path.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

class Job {
 public:
  ~Job() {
    for (auto& r : ranks_) {
      if (!r.exited) {
        ::kill(r.pid, SIGKILL);
        ::waitpid(r.pid, nullptr, 0);
      }
      ::unlink(r.out_path.c_str());
    }
  }
  void add(const std::vector<std::string>& argv, const Env& env) { ranks_.push_back(spawn(argv, env)); }
  RankProcess& operator[](size_t i) { return ranks_[i]; }
  size_t size() const { return ranks_.size(); }

  // Reaps whatever exited, recording when.
  void reap() {
    for (auto& r : ranks_) {
      if (r.exited) continue;
      int status = 0;
      if (::waitpid(r.pid, &status, WNOHANG) != r.pid) continue;
      r.exited = true;
      r.exited_at = Clock::now();
      r.exit_code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    }
  }
  // Waits until `done` holds (checked every 5 ms after reaping); false after `limit`.
  template <typename Pred>
  bool wait_until(Pred done, std::chrono::milliseconds limit) {
    const auto until = Clock::now() + limit;
    for (;;) {
      reap();
      if (done()) return true;
      if (Clock::now() >= until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  bool all_exited(const std::vector<int>& which) {
    for (int i : which)
      if (!ranks_[static_cast<size_t>(i)].exited) return false;
    return true;
  }
  void kill_all() {
    for (auto& r : ranks_)
      if (!r.exited) ::kill(r.pid, SIGKILL);
    wait_until(
        [&] {
          for (auto& r : ranks_)
            if (!r.exited) return false;
          return true;
        },
        std::chrono::seconds(10));
  }

 private:
  std::vector<RankProcess> ranks_;
};

// The rank's own error, as comm_worker prints it ("ERROR: ..."); never
// another process's log line.
inline std::string own_error(const std::string& output) {
  const auto at = output.find("ERROR: ");
  if (at == std::string::npos) return "";
  return output.substr(at, output.find('\n', at) - at);
}

// Does `text` blame rank `victim` in one of the forms failure_report.cpp uses?
inline bool blames(const std::string& text, int victim) {
  for (const char* verb : {" died", " is unresponsive", " did not arrive", " left the job"})
    if (text.find("rank " + std::to_string(victim) + verb) != std::string::npos) return true;
  return false;
}

inline std::string find_ip_command() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
    if (::access(p, X_OK) == 0) return p;
  return "";
}

// Two namespaces ("hosts") joined by a veth pair; removed on destruction.
struct TwoHosts {
  std::string ip, a, b, va, vb, subnet;
  bool ok = false;
  std::string error;

  TwoHosts(const std::string& ip_command, int id) : ip(ip_command) {
    const std::string sid = std::to_string(::getpid()) + "x" + std::to_string(id);
    a = "dtfA" + sid;
    b = "dtfB" + sid;
    va = "fa" + sid;
    vb = "fb" + sid;
    subnet = "10.233." + std::to_string(id % 250) + ".";
    const std::vector<std::vector<std::string>> steps = {{ip, "netns", "add", a},
                                                         {ip, "netns", "add", b},
                                                         {ip, "link", "add", va, "type", "veth", "peer", "name", vb},
                                                         {ip, "link", "set", va, "netns", a},
                                                         {ip, "link", "set", vb, "netns", b},
                                                         {ip, "-n", a, "addr", "add", subnet + "1/24", "dev", va},
                                                         {ip, "-n", b, "addr", "add", subnet + "2/24", "dev", vb},
                                                         {ip, "-n", a, "link", "set", va, "up"},
                                                         {ip, "-n", b, "link", "set", vb, "up"},
                                                         {ip, "-n", a, "link", "set", "lo", "up"},
                                                         {ip, "-n", b, "link", "set", "lo", "up"}};
    for (const auto& s : steps) {
      std::string out;
      if (run_command(s, &out) != 0) {
        error = s[1] + " " + s[2] + " " + s[3] + ": " + out;
        return;
      }
    }
    ok = true;
  }
  ~TwoHosts() {
    run_command({ip, "netns", "del", a});
    run_command({ip, "netns", "del", b});
  }
  // Cuts the link from host B's side: B's ranks can no longer reach A's, and
  // no packet says so (no RST), as when a cable or a switch port fails.
  bool cut() { return run_command({ip, "-n", b, "link", "set", vb, "down"}) == 0; }
};

}  // namespace dtrain::faults
