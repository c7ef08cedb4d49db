// Floods of unauthenticated connections against the store of a live 2-rank
// training job: idle, slow, churning, and ones declaring oversized frames.
// For each, rank 0's step rate and resident memory are measured in a window
// just before and one during the flood; a member must still be able to
// join meanwhile; rank 0's thread count must not grow (no thread per
// connection). Figures are printed as "flood <kind> ..." lines.
#include <poll.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <deque>
#include <functional>

#include "attack_util.h"
#include "dtrain/comm/store.h"

using namespace dtrain;
using namespace dtrain::testing;
using namespace std::chrono_literals;

namespace {

#if defined(__SANITIZE_ADDRESS__)
// Under AddressSanitizer freed memory stays resident in its quarantine and
// everything runs several times slower: the floods still run (for the
// sanitizer's findings) but rates and memory are not asserted.
constexpr bool kMeasured = false;
#else
constexpr bool kMeasured = true;
#endif

const std::vector<std::string> kSources = {"127.0.0.2", "127.0.0.3", "127.0.0.4"};

bool closed_by_peer(int fd) {
  char c;
  const ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

// Keeps up to `count` connections open, reopening those the server closed;
// `feed` may write to one now and then (slow floods, oversized declarations).
void hold_connections(const std::atomic<bool>& stop, int port, size_t count, const std::function<void(int)>& on_open,
                      const std::function<void(int)>& feed, std::atomic<long>& opened) {
  std::deque<int> fds;
  while (!stop) {
    for (auto it = fds.begin(); it != fds.end();) {
      if (closed_by_peer(*it)) {
        ::close(*it);
        it = fds.erase(it);
      } else {
        feed(*it);
        ++it;
      }
    }
    while (fds.size() < count && !stop) {
      const int fd = connect_from(kSources[opened % kSources.size()], port);
      if (fd < 0) break;
      ++opened;
      on_open(fd);
      fds.push_back(fd);
    }
    std::this_thread::sleep_for(100ms);
  }
  for (int fd : fds) ::close(fd);
}

void churn(const std::atomic<bool>& stop, int port, std::atomic<long>& opened) {
  for (long i = 0; !stop; ++i) {
    const int fd = connect_from("127.0.0." + std::to_string(2 + i % 8), port);
    if (fd >= 0) {
      ++opened;
      ::close(fd);  // a reset: no TIME_WAIT on our side
    }
  }
}

}  // namespace

TEST_CASE("store floods leave the job training and rank 0's memory and threads flat", "[security][flood]") {
  TrainingJob job;
  job.start(0);
  job.start(1);
  REQUIRE(job.wait_for_steps(5, 60s));
  const int port = job.store_port();
  const pid_t rank0 = job.rank(0).pid();
  const auto first = job.measure(1500ms);
  const long rss_start_kb = first.max_rss_kb;
  const long threads_start = first.max_threads;

  const std::string prefix_16mib("\x00\x00\x00\x01", 4);
  struct Flood {
    std::string name;
    std::function<void(const std::atomic<bool>&, std::atomic<long>&)> run;
  };
  const auto nothing = [](int) {};
  const std::vector<Flood> floods = {
      {"idle", [&](const std::atomic<bool>& stop,
                   std::atomic<long>& n) { hold_connections(stop, port, 300, nothing, nothing, n); }},
      {"slow",
       [&](const std::atomic<bool>& stop,
           std::atomic<long>& n) {  // a hello's first bytes, one per 100 ms, never finished
         hold_connections(
             stop, port, 60, nothing, [](int fd) { (void)::send(fd, "\x01", 1, MSG_NOSIGNAL | MSG_DONTWAIT); }, n);
       }},
      {"churn", [&](const std::atomic<bool>& stop, std::atomic<long>& n) { churn(stop, port, n); }},
      {"oversized", [&](const std::atomic<bool>& stop, std::atomic<long>& n) {
         hold_connections(
             stop, port, 60,
             [&](int fd) {  // declares a 16 MiB frame, then sends filler
               (void)::send(fd, prefix_16mib.data(), 4, MSG_NOSIGNAL);
             },
             [](int fd) {
               static const std::string filler(4096, 'x');
               (void)::send(fd, filler.data(), filler.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
             },
             n);
       }}};

  for (const auto& flood : floods) {
    const auto before = job.measure(2000ms);
    std::atomic<bool> stop{false};
    std::atomic<long> opened{0};
    std::thread attacker([&] { flood.run(stop, opened); });
    std::this_thread::sleep_for(300ms);
    const auto during = job.measure(2500ms);
    // A member can still join while the flood goes on.
    bool joined = false;
    std::string join_error;
    try {
      comm::TcpStoreOptions o;
      o.port = port;
      o.timeout = 10s;
      o.auth_token = kTestToken;
      comm::TcpStore late(o);
      late.set("flood/" + flood.name, "joined");
      joined = late.get("flood/" + flood.name) == "joined";
    } catch (const std::exception& e) {
      join_error = e.what();
    }
    stop = true;
    attacker.join();
    const double ratio = before.steps_per_s > 0 ? during.steps_per_s / before.steps_per_s : 0;
    const long rss_growth_kb = during.max_rss_kb - rss_start_kb;
    std::printf(
        "flood %-9s connections %6ld  steps/s before %6.2f during %6.2f (ratio %.2f)  rank0 RSS +%ld kB "
        "(max %ld kB)  threads %ld -> %ld\n",
        flood.name.c_str(), opened.load(), before.steps_per_s, during.steps_per_s, ratio, rss_growth_kb,
        during.max_rss_kb, threads_start, during.max_threads);
    std::fflush(stdout);
    INFO(flood.name << ": " << join_error);
    CHECK(opened > 0);
    // Declaring a 16 MiB frame before authenticating closes the connection at
    // once: each of the 60 is reopened on (nearly) every 100 ms round.
    if (flood.name == "oversized" && kMeasured) CHECK(opened > 60 * 12);
    CHECK(joined);
    CHECK(::kill(rank0, 0) == 0);
    // Goal 0.9; 2 shared cores also run the attacker and the other rank, and
    // step rates on them vary by 30% between windows, so the assertion keeps
    // a margin for noise (it still catches a store that stalls the job).
    if (kMeasured) {
      CHECK(ratio >= 0.5);
      CHECK(rss_growth_kb < 50 * 1024);
    }
    CHECK(during.max_threads <= threads_start + 1);
  }
  const auto rs = job.stop_and_wait(60s);
  INFO(dump(rs));
  CHECK(rs[0].exit_code == 0);
  CHECK(rs[1].exit_code == 0);
  const std::string& log = rs[0].output;
  if (kMeasured) CHECK(log.find("too many connections that have not authenticated") != std::string::npos);
  // Refusal lines are rate-limited: 20 per 10 s window, plus one summary line per window.
  size_t store_lines = 0;
  for (size_t at = log.find("[dtrain store]"); at != std::string::npos; at = log.find("[dtrain store]", at + 1))
    ++store_lines;
  CHECK(store_lines < 21 * (static_cast<size_t>(rs[0].seconds / 10) + 2));
  CHECK(log.find("left out in the last") != std::string::npos);
}
