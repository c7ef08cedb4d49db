// Test helpers: run programs (ranks, the launcher) as real processes with a
// deadline, capturing their output.
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
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "comm/socket_util.h"
#include "spawn_to_file.h"

namespace dtrain::testing {

using Env = std::map<std::string, std::string>;

struct ProcessResult {
  int exit_code = -1;  // 128 + signal when killed
  std::string output;  // stdout and stderr together
  double seconds = 0;  // from start to exit
  bool timed_out = false;
};

// A started process whose output goes to a temp file.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const Env& env) : start_(std::chrono::steady_clock::now()) {
    SpawnedProcess p = spawn_to_file(argv, env, "/tmp/dtrain_comm_test_XXXXXX");
    pid_ = p.pid;
    out_path_ = std::move(p.out_path);
  }
  ~Process() {
    if (!finished_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::unlink(out_path_.c_str());
  }
  pid_t pid() const { return pid_; }

  // Output written so far (the process may still be running).
  std::string output_so_far() const { return read_whole_file(out_path_); }
  // Waits until the output contains `text`; false after `limit`.
  bool wait_for_output(const std::string& text, std::chrono::milliseconds limit) const {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      if (output_so_far().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  // Waits up to `limit`; kills the process if it is still running then.
  ProcessResult wait(std::chrono::milliseconds limit) {
    ProcessResult r;
    const auto deadline = start_ + limit;
    int status = 0;
    for (;;) {
      const pid_t got = ::waitpid(pid_, &status, WNOHANG);
      if (got == pid_) break;
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        r.timed_out = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    finished_ = true;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    r.exit_code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    r.output = read_whole_file(out_path_);
    return r;
  }

 private:
  pid_t pid_ = -1;
  bool finished_ = false;
  std::string out_path_;
  std::chrono::steady_clock::time_point start_;
};

// A test job's token: random hex of 128+ bits, as the store requires.
inline const std::string kTestToken = "7d41e0b9a3c58f26d1e74b0a9c3f5e82";

inline Env job_env(int rank, int world, int port, const std::string& token = kTestToken) {
  return Env{{"RANK", std::to_string(rank)},       {"WORLD_SIZE", std::to_string(world)},
             {"LOCAL_RANK", std::to_string(rank)}, {"LOCAL_WORLD_SIZE", std::to_string(world)},
             {"MASTER_ADDR", "127.0.0.1"},         {"MASTER_PORT", std::to_string(port)},
             {"DTRAIN_AUTH_TOKEN", token},         {"OMP_NUM_THREADS", "1"}};
}

// Starts `world` ranks of comm_worker with `args`, plus extra env.
inline std::vector<std::unique_ptr<Process>> start_ranks(int world, const std::vector<std::string>& args,
                                                         const Env& extra = {}, int port = 0) {
  if (port == 0) port = comm::net::pick_free_port();
  std::vector<std::unique_ptr<Process>> ranks;
  for (int r = 0; r < world; ++r) {
    Env env = job_env(r, world, port);
    for (const auto& [k, v] : extra) env[k] = v;
    std::vector<std::string> argv = {DTRAIN_COMM_WORKER};
    argv.insert(argv.end(), args.begin(), args.end());
    ranks.push_back(std::make_unique<Process>(argv, env));
  }
  return ranks;
}

inline std::vector<ProcessResult> wait_all(std::vector<std::unique_ptr<Process>>& ranks,
                                           std::chrono::milliseconds limit) {
  std::vector<ProcessResult> out;
  for (auto& p : ranks) out.push_back(p->wait(limit));
  return out;
}

}  // namespace dtrain::testing
