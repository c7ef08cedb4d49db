// Test helper shared by the process harnesses (tests/comm/process_util.h,
// tests/faults/fault_job.h): start a program as a real child process whose
// stdout and stderr go to a temp file, so a test can read what it printed
// while it runs and after it exits.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace dtrain::testing {

struct SpawnedProcess {
  pid_t pid = -1;
  std::string out_path;  // the temp file; the caller unlinks it
};

// Forks and execs argv[0] (a path) with `env` applied on top of this
// process's environment; a value of "<unset>" removes that variable.
// `path_template` is a mkstemp template ("/tmp/dtrain_x_XXXXXX").
inline SpawnedProcess spawn_to_file(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                                    const std::string& path_template) {
  std::vector<char> path(path_template.begin(), path_template.end());
  path.push_back('\0');
  const int fd = ::mkstemp(path.data());
  if (fd < 0) {
    std::perror("spawn_to_file: mkstemp");
    std::abort();  // the test machine's /tmp is broken: nothing to test
  }
  SpawnedProcess p;
  p.out_path = path.data();
  p.pid = ::fork();
  if (p.pid == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    for (const auto& [k, v] : env) {
      if (v == "<unset>")
        ::unsetenv(k.c_str());
      else
        ::setenv(k.c_str(), v.c_str(), 1);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    std::fprintf(stderr, "exec %s failed\n", args[0]);
    ::_exit(127);
  }
  ::close(fd);
  return p;
}

// The whole file as it is now (a running process may still be writing it).
inline std::string read_whole_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace dtrain::testing
