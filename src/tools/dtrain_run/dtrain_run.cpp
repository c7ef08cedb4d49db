// dtrain-run: starts the local ranks of a job with torchrun's environment.
//
//   dtrain-run --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P]
//              [--iface IFACE] PROG ARGS...
//   dtrain-run --new-token      prints a fresh job token (32 random bytes, hex) for multi-node jobs
//
// Each rank gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT, OMP_NUM_THREADS (cores / local ranks unless already set) and,
// for single-node jobs without one, a fresh random DTRAIN_AUTH_TOKEN. Output
// lines are prefixed with "[rank N] ". SIGINT/SIGTERM are forwarded. When a
// rank fails, the others get SIGTERM, then SIGKILL after --grace-s, and
// dtrain-run exits with the failed rank's code (128 + signal if killed).
//
// Each rank runs in its own process group (so a terminal's Ctrl-C reaches
// the ranks once, through this launcher) and dies with the launcher
// (PR_SET_PDEATHSIG), so no rank outlives a killed launcher.
//
// [Job end] Signals go to each rank's whole process group, so a rank's own
// children (data loader workers, shells) go with it; a stopped rank gets
// SIGCONT after SIGTERM so it can act on it, and SIGKILL after the grace
// period either way. When a rank exits, whatever it left in its group is
// killed. Ctrl-C (SIGINT) or SIGTERM ends the job within 5 s: the grace
// period after a user's signal is at most 3 s. The final line names the
// failing rank and its reason: the last line it wrote to stderr (usually
// dtrain's error, which names the rank to blame).
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

int g_signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  const unsigned char s = static_cast<unsigned char>(sig);
  const int saved = errno;
  [[maybe_unused]] ssize_t n = ::write(g_signal_pipe[1], &s, 1);
  errno = saved;
}

struct Rank {
  int global_rank = 0;
  pid_t pid = -1;   // also its process group id
  int out_fd = -1;  // child's stdout
  int err_fd = -1;  // child's stderr
  std::string out_partial, err_partial;
  bool exited = false;
  int exit_code = 0;          // shell convention: 128 + signal when killed
  std::string how;            // "exited with code 3" / "was killed by signal 9 (Killed)"
  std::string last_err_line;  // the reason shown when it fails
  bool stopped_reported = false;
};

std::string random_token(size_t n = 24) {
  std::vector<unsigned char> bytes(n);
  std::ifstream in("/dev/urandom", std::ios::binary);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!in) {
    std::fprintf(stderr, "dtrain-run: cannot read /dev/urandom for the job token\n");
    std::exit(1);
  }
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (unsigned char b : bytes) {
    s.push_back(kHex[b >> 4]);
    s.push_back(kHex[b & 15]);
  }
  return s;
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 29500;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) ::close(fd);
  return port;
}

int usable_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return static_cast<int>(std::thread::hardware_concurrency());
}

// Writes complete lines from `buffer` with the rank prefix; keeps the rest.
// The last non-empty line goes to `last` when given.
void emit_lines(std::string& buffer, FILE* to, int rank, bool flush_partial, std::string* last) {
  size_t start = 0;
  for (;;) {
    const size_t nl = buffer.find('\n', start);
    if (nl == std::string::npos) break;
    std::fprintf(to, "[rank %d] %.*s\n", rank, static_cast<int>(nl - start), buffer.data() + start);
    if (last != nullptr && nl > start) last->assign(buffer, start, nl - start);
    start = nl + 1;
  }
  buffer.erase(0, start);
  if (flush_partial && !buffer.empty()) {
    std::fprintf(to, "[rank %d] %s\n", rank, buffer.c_str());
    if (last != nullptr) *last = buffer;
    buffer.clear();
  }
  std::fflush(to);
}

// Drains a pipe; returns false at EOF.
bool read_pipe(int fd, std::string& buffer, FILE* to, int rank, std::string* last = nullptr) {
  char chunk[65536];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n > 0) {
      buffer.append(chunk, static_cast<size_t>(n));
      emit_lines(buffer, to, rank, false, last);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    emit_lines(buffer, to, rank, true, last);
    return false;
  }
}

pid_t spawn(const std::vector<std::string>& command, const std::vector<std::pair<std::string, std::string>>& env,
            int* out_fd, int* err_fd) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    std::perror("dtrain-run: pipe");
    std::exit(1);
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("dtrain-run: fork");
    std::exit(1);
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);  // the launcher died before prctl
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    argv.reserve(command.size() + 1);
    for (const auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "dtrain-run: cannot execute '%s': %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also from the parent, to avoid racing the child
  ::close(out[1]);
  ::close(err[1]);
  ::fcntl(out[0], F_SETFL, O_NONBLOCK);
  ::fcntl(err[0], F_SETFL, O_NONBLOCK);
  *out_fd = out[0];
  *err_fd = err[0];
  return pid;
}

// ---- job end ([Job end] above) -------------------------------------------------

// Signals the process group of every rank still running. A stopped rank is
// continued after SIGTERM/SIGINT so it can act on them.
void signal_all(std::vector<Rank>& ranks, int sig) {
  for (auto& r : ranks) {
    if (r.exited) continue;
    ::kill(-r.pid, sig);
    if (sig != SIGKILL) ::kill(-r.pid, SIGCONT);
  }
}

// Reaps a rank if it exited; notes (once) a rank stopped by a signal.
// Returns true when it exited now.
bool reap(Rank& r) {
  int status = 0;
  if (::waitpid(r.pid, &status, WNOHANG | WUNTRACED) != r.pid) return false;
  if (WIFSTOPPED(status)) {
    if (!r.stopped_reported) {
      std::fprintf(stderr, "dtrain-run: rank %d (pid %d) was stopped by signal %d (%s)\n", r.global_rank,
                   static_cast<int>(r.pid), WSTOPSIG(status), strsignal(WSTOPSIG(status)));
      std::fflush(stderr);
      r.stopped_reported = true;
    }
    return false;
  }
  r.exited = true;
  // What the rank left running in its group (its children) goes with it;
  // done at once, while the group id cannot belong to anybody else.
  ::kill(-r.pid, SIGKILL);
  if (WIFSIGNALED(status)) {
    r.exit_code = 128 + WTERMSIG(status);
    r.how = "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  } else {
    r.exit_code = WEXITSTATUS(status);
    r.how = "exited with code " + std::to_string(r.exit_code);
  }
  return true;
}

// Of the ranks that failed in one pass, the one to blame: a rank killed by a
// signal caused the others' errors, so it goes first; then the lowest rank.
int pick_failure(const std::vector<Rank>& ranks, const std::vector<size_t>& failed_now) {
  int best = -1;
  for (size_t i : failed_now) {
    const bool signaled = ranks[i].exit_code > 128;
    if (best < 0 || (signaled && ranks[static_cast<size_t>(best)].exit_code <= 128)) best = static_cast<int>(i);
  }
  return best;
}

// "dtrain-run: job failed: rank 2 was killed by signal 9 (Killed)", plus the
// rank's last stderr line when it has one (dtrain's error names the culprit).
void print_failure(const Rank& r) {
  std::string reason = r.last_err_line;
  if (reason.size() > 400) reason = reason.substr(0, 400) + "...";
  std::fprintf(stderr, "dtrain-run: job failed: rank %d %s%s%s\n", r.global_rank, r.how.c_str(),
               reason.empty() ? "" : ": ", reason.c_str());
  std::fflush(stderr);
}

}  // namespace

// Nothing here throws on user input (bad options and failures return codes); what can
// throw is allocation (bad_alloc), and ending the launcher then is right.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  CLI::App app{"dtrain-run: start the local ranks of a dtrain job"};
  int nproc = 1, nnodes = 1, node_rank = 0, master_port = 0;
  double grace_s = 5.0;
  std::string master_addr = "127.0.0.1";
  auto* nproc_option =
      app.add_option("--nproc-per-node", nproc, "ranks to start on this node (required)")->check(CLI::Range(1, 4096));
  app.add_option("--nnodes", nnodes, "number of nodes in the job")->check(CLI::Range(1, 100000));
  app.add_option("--node-rank", node_rank, "this node's index in [0, nnodes)")->check(CLI::NonNegativeNumber);
  app.add_option("--master-addr", master_addr, "address of node 0 (hosts the store)");
  app.add_option("--master-port", master_port, "store port (default: a free port for one node, 29500 otherwise)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--grace-s", grace_s, "seconds between SIGTERM and SIGKILL when stopping ranks")
      ->check(CLI::NonNegativeNumber);
  bool new_token = false;
  app.add_flag("--new-token", new_token,
               "print a fresh job token (32 random bytes in hex) and exit: export DTRAIN_AUTH_TOKEN=$(dtrain-run "
               "--new-token) on one node, then give every node the same value");
  std::string iface;
  app.add_option("--iface", iface,
                 "network interface for Gloo and NCCL sockets (sets DTRAIN_IFACE and NCCL_SOCKET_IFNAME), e.g. the "
                 "job's private network or WireGuard interface");
  app.prefix_command();
  CLI11_PARSE(app, argc, argv);
  if (new_token) {
    std::printf("%s\n", random_token(32).c_str());
    return 0;
  }
  if (nproc_option->count() == 0) {
    std::fprintf(stderr, "dtrain-run: --nproc-per-node is required\n%s", app.help().c_str());
    return 2;
  }
  std::vector<std::string> command = app.remaining();
  if (command.empty()) {
    std::fprintf(stderr, "dtrain-run: no program given\n%s", app.help().c_str());
    return 2;
  }
  if (node_rank >= nnodes) {
    std::fprintf(stderr, "dtrain-run: --node-rank %d must be below --nnodes %d\n", node_rank, nnodes);
    return 2;
  }
  if (master_port == 0) master_port = nnodes == 1 ? free_port() : 29500;
  std::string token = std::getenv("DTRAIN_AUTH_TOKEN") ? std::getenv("DTRAIN_AUTH_TOKEN") : "";
  if (token.empty()) {
    if (nnodes > 1) {
      std::fprintf(stderr,
                   "dtrain-run: multi-node jobs need DTRAIN_AUTH_TOKEN set to the same secret on every node "
                   "(make one with: export DTRAIN_AUTH_TOKEN=$(dtrain-run --new-token))\n");
      return 2;
    }
    token = random_token();
  }
  const int world = nnodes * nproc;
  const std::string omp = std::getenv("OMP_NUM_THREADS") ? std::getenv("OMP_NUM_THREADS")
                                                         : std::to_string(std::max(1, usable_cores() / nproc));

  if (::pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    std::perror("dtrain-run: pipe");
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGCHLD, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  std::vector<Rank> ranks(static_cast<size_t>(nproc));
  for (int i = 0; i < nproc; ++i) {
    Rank& r = ranks[static_cast<size_t>(i)];
    r.global_rank = node_rank * nproc + i;
    std::vector<std::pair<std::string, std::string>> env = {{"RANK", std::to_string(r.global_rank)},
                                                            {"WORLD_SIZE", std::to_string(world)},
                                                            {"LOCAL_RANK", std::to_string(i)},
                                                            {"LOCAL_WORLD_SIZE", std::to_string(nproc)},
                                                            {"GROUP_RANK", std::to_string(node_rank)},
                                                            {"MASTER_ADDR", master_addr},
                                                            {"MASTER_PORT", std::to_string(master_port)},
                                                            {"OMP_NUM_THREADS", omp},
                                                            {"DTRAIN_AUTH_TOKEN", token}};
    if (!iface.empty()) {
      env.emplace_back("DTRAIN_IFACE", iface);
      env.emplace_back("NCCL_SOCKET_IFNAME", iface);
    }
    r.pid = spawn(command, env, &r.out_fd, &r.err_fd);
  }

  int failed = -1;      // index of the first rank that failed
  int user_signal = 0;  // SIGINT/SIGTERM received
  Clock::time_point kill_at = Clock::time_point::max();
  Clock::time_point all_exited_at = Clock::time_point::max();
  for (;;) {
    std::vector<pollfd> fds;
    fds.push_back({g_signal_pipe[0], POLLIN, 0});
    for (auto& r : ranks) {
      if (r.out_fd >= 0) fds.push_back({r.out_fd, POLLIN, 0});
      if (r.err_fd >= 0) fds.push_back({r.err_fd, POLLIN, 0});
    }
    ::poll(fds.data(), fds.size(), 50);
    unsigned char sig;
    while (::read(g_signal_pipe[0], &sig, 1) == 1) {
      if (sig == SIGINT || sig == SIGTERM) {
        if (user_signal == 0) {
          std::fprintf(stderr, "dtrain-run: received %s, forwarding it to the ranks\n", strsignal(sig));
          user_signal = sig;
          signal_all(ranks, sig);
          const double user_grace_s = std::min(grace_s, 3.0);  // the whole job ends within 5 s
          kill_at =
              std::min(kill_at, Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(user_grace_s * 1000)));
        } else {
          signal_all(ranks, SIGKILL);  // second signal: no more grace
        }
      }
    }
    for (auto& r : ranks) {
      if (r.out_fd >= 0 && !read_pipe(r.out_fd, r.out_partial, stdout, r.global_rank)) {
        ::close(r.out_fd);
        r.out_fd = -1;
      }
      if (r.err_fd >= 0 && !read_pipe(r.err_fd, r.err_partial, stderr, r.global_rank, &r.last_err_line)) {
        ::close(r.err_fd);
        r.err_fd = -1;
      }
    }
    std::vector<size_t> failed_now;
    for (size_t i = 0; i < ranks.size(); ++i)
      if (!ranks[i].exited && reap(ranks[i]) && ranks[i].exit_code != 0) failed_now.push_back(i);
    if (!failed_now.empty() && failed < 0 && user_signal == 0) {
      failed = pick_failure(ranks, failed_now);
      const Rank& r = ranks[static_cast<size_t>(failed)];
      std::fprintf(stderr, "dtrain-run: rank %d (pid %d) %s; stopping the other ranks\n", r.global_rank,
                   static_cast<int>(r.pid), r.how.c_str());
      std::fflush(stderr);
      signal_all(ranks, SIGTERM);
      kill_at = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000));
    }
    if (Clock::now() >= kill_at) {
      signal_all(ranks, SIGKILL);
      kill_at = Clock::time_point::max();
    }
    bool all_done = true;
    for (auto& r : ranks) all_done = all_done && r.exited && r.out_fd < 0 && r.err_fd < 0;
    if (all_done) break;
    // A process that left its rank's group may keep a pipe open after every
    // rank exited: read on only briefly then.
    bool all_exited = true;
    for (auto& r : ranks) all_exited = all_exited && r.exited;
    if (all_exited) {
      if (all_exited_at == Clock::time_point::max())
        all_exited_at = Clock::now();
      else if (Clock::now() - all_exited_at > std::chrono::seconds(1))
        break;
    }
  }
  if (failed >= 0) {
    print_failure(ranks[static_cast<size_t>(failed)]);
    return ranks[static_cast<size_t>(failed)].exit_code;
  }
  if (user_signal != 0) return 128 + user_signal;
  return 0;
}
