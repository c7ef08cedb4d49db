// Liveness thread: heartbeats, poison, peers' state (see liveness.h for why
// it is a thread of its own and may block where the watchdog must not).
#include "comm/liveness.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <sstream>
#include <thread>

#include "comm/store_keys.h"
#include "dtrain/error.h"

namespace dtrain::comm {

namespace {

using Clock = std::chrono::steady_clock;

std::string rank_key(const char* name, int rank) {
  return std::string(name) + "/" + std::to_string(rank);
}

std::string list_ranks(const std::vector<int>& ranks) {
  std::string s = "[";
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s + "]";
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

struct Liveness::State {
  std::shared_ptr<Store> store;      // this communicator's prefix
  std::shared_ptr<Store> job_store;  // poison and lost keys
  LivenessOptions o;
  std::chrono::milliseconds period{1000};
  double stale_s = 3;

  mutable std::mutex mutex;
  std::condition_variable wake;  // the thread: stop, refresh, poison or left to publish
  std::condition_variable done;  // waiters: a refresh finished, left published, thread exited
  bool stop = false;
  bool exited = false;
  bool watching = false;
  uint64_t refresh_requested = 0;
  uint64_t refresh_done = 0;
  std::string poison_to_publish;
  std::optional<uint64_t> left_to_publish;
  bool left_published = false;
  bool in_request = false;
  Clock::time_point request_started;
  double last_failed_batch_s = 0;  // a batch that failed without the connection dropping
  Evidence ev;
  std::vector<std::string> last_heartbeat;
  std::vector<Clock::time_point> heartbeat_changed;
  std::vector<Clock::time_point> heartbeat_read;  // silence is only known up to the last read
  std::string poison_reported;                    // the poison already handed to o.poisoned
  uint64_t counter = 0;
  std::thread thread;

  bool has_work() const {
    return stop || refresh_requested > refresh_done || !poison_to_publish.empty() ||
           (left_to_publish && !left_published);
  }

  void read_peers() {
    for (int r = 0; r < o.size; ++r) {
      if (r == o.rank) continue;
      const auto hb = store->try_get(rank_key("hb", r));
      const bool lost = job_store->check({keys::lost(o.global_ranks[static_cast<size_t>(r)])});
      const auto left = store->try_get(rank_key("left", r));
      std::lock_guard<std::mutex> lock(mutex);
      PeerView& p = ev.peers[static_cast<size_t>(r)];
      p.lost = lost;
      if (left) p.left_after = std::stoull(*left);
      if (hb) {
        const auto now = Clock::now();
        if (!p.heartbeat_seen || *hb != last_heartbeat[static_cast<size_t>(r)]) {
          heartbeat_changed[static_cast<size_t>(r)] = now;
          last_heartbeat[static_cast<size_t>(r)] = *hb;
        }
        heartbeat_read[static_cast<size_t>(r)] = now;
        p.heartbeat_seen = true;
        std::istringstream in(*hb);
        uint64_t count = 0;
        in >> count >> p.entered;
        std::getline(in >> std::ws, p.running);
      }
    }
    std::lock_guard<std::mutex> lock(mutex);
    ev.peers_read = true;
  }

  void loop() {
    auto next = Clock::now();
    for (;;) {
      uint64_t want = 0;
      bool peers = false;
      std::string poison_out;
      std::optional<uint64_t> left_out;
      {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait_until(lock, next, [&] { return has_work(); });
        if (stop && !(left_to_publish && !left_published)) break;
        next = Clock::now() + period;
        want = refresh_requested;
        peers = watching || want > refresh_done || !ev.poison.empty();
        poison_out = std::move(poison_to_publish);
        poison_to_publish.clear();
        if (left_to_publish && !left_published) left_out = left_to_publish;
        in_request = true;
        request_started = Clock::now();
      }
      std::string poison_in;
      bool ok = true;
      try {
        if (left_out) store->set(rank_key("left", o.rank), std::to_string(*left_out));
        if (!poison_out.empty() && !job_store->check({keys::kPoison})) job_store->set(keys::kPoison, poison_out);
        const LocalStatus st = o.status ? o.status() : LocalStatus{};
        store->set(rank_key("hb", o.rank), std::to_string(++counter) + " " + std::to_string(st.entered) + " " +
                                               (st.running.empty() ? "-" : st.running));
        if (auto p = job_store->try_get(keys::kPoison)) poison_in = *p;
        if (peers || !poison_in.empty()) read_peers();
        if (o.each_period) o.each_period(*store);
      } catch (const std::exception& e) {
        ok = false;
        std::lock_guard<std::mutex> lock(mutex);
        const std::string what = e.what();
        ev.store_error = what;
        if (what.find("lost the connection") != std::string::npos || what.find("is closed") != std::string::npos)
          ev.store_lost = true;
        else
          last_failed_batch_s = seconds_since(request_started);
      }
      bool report = false;
      {
        std::lock_guard<std::mutex> lock(mutex);
        in_request = false;
        if (ok) last_failed_batch_s = 0;
        refresh_done = std::max(refresh_done, want);
        if (left_out) left_published = true;
        if (!poison_in.empty()) {
          ev.poison = poison_in;
          report = poison_reported.empty() && !stop;
          if (report) poison_reported = poison_in;
        }
      }
      done.notify_all();
      if (report && o.poisoned) o.poisoned(poison_in);
      // A lost store stays lost: slow down instead of spinning on errors.
      if (!ok) next = Clock::now() + std::max(period, std::chrono::milliseconds(200));
    }
    std::lock_guard<std::mutex> lock(mutex);
    exited = true;
    done.notify_all();
  }
};

Liveness::Liveness(std::shared_ptr<Store> comm_store, std::shared_ptr<Store> job_store, LivenessOptions options)
    : state_(std::make_shared<State>()) {
  auto& s = *state_;
  s.store = std::move(comm_store);
  s.job_store = std::move(job_store);
  s.o = std::move(options);
  if (s.o.global_ranks.empty())
    for (int r = 0; r < s.o.size; ++r) s.o.global_ranks.push_back(r);
  // About ten heartbeats per timeout, between 50 ms and 1 s; a peer silent
  // for three periods (at least a second) is unresponsive.
  s.period = std::clamp(s.o.timeout / 10, std::chrono::milliseconds(50), std::chrono::milliseconds(1000));
  s.stale_s = std::max(1.0, 3.0 * static_cast<double>(s.period.count()) / 1000.0);
  s.ev.peers.resize(static_cast<size_t>(s.o.size));
  for (int r = 0; r < s.o.size; ++r) s.ev.peers[static_cast<size_t>(r)].rank = r;
  s.last_heartbeat.resize(static_cast<size_t>(s.o.size));
  s.heartbeat_changed.resize(static_cast<size_t>(s.o.size));
  s.heartbeat_read.resize(static_cast<size_t>(s.o.size));
  auto keep = state_;
  s.thread = std::thread([keep] { keep->loop(); });
}

Liveness::~Liveness() {
  auto& s = *state_;
  std::unique_lock<std::mutex> lock(s.mutex);
  s.stop = true;
  s.wake.notify_all();
  const bool exited = s.done.wait_for(lock, std::chrono::milliseconds(500), [&] { return s.exited; });
  lock.unlock();
  // A thread stuck in a request to an unresponsive store finishes on its own
  // (it keeps the state alive); the rank must not wait for it to exit.
  if (exited)
    s.thread.join();
  else
    s.thread.detach();
}

std::chrono::milliseconds Liveness::period() const {
  return state_->period;
}

double Liveness::unresponsive_after_s() const {
  return state_->stale_s;
}

Evidence Liveness::snapshot() const {
  auto& s = *state_;
  std::lock_guard<std::mutex> lock(s.mutex);
  Evidence e = s.ev;
  for (int r = 0; r < s.o.size; ++r)
    if (e.peers[static_cast<size_t>(r)].heartbeat_seen)
      e.peers[static_cast<size_t>(r)].silent_s =
          std::chrono::duration<double>(s.heartbeat_read[static_cast<size_t>(r)] -
                                        s.heartbeat_changed[static_cast<size_t>(r)])
              .count();
  e.store_silent_s = s.in_request ? seconds_since(s.request_started) : s.last_failed_batch_s;
  return e;
}

Evidence Liveness::refresh(std::chrono::milliseconds limit) {
  auto& s = *state_;
  {
    std::unique_lock<std::mutex> lock(s.mutex);
    const uint64_t ticket = ++s.refresh_requested;
    s.wake.notify_all();
    s.done.wait_for(lock, limit, [&] { return s.refresh_done >= ticket || s.exited; });
  }
  return snapshot();
}

void Liveness::watch(bool on) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->watching = on;
}

void Liveness::publish_poison(const std::string& reason) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->poison_to_publish = reason;
  state_->wake.notify_all();
}

void Liveness::publish_left(uint64_t seq) {
  auto& s = *state_;
  std::unique_lock<std::mutex> lock(s.mutex);
  s.left_to_publish = seq;
  s.wake.notify_all();
  s.done.wait_for(lock, std::chrono::seconds(2), [&] { return s.left_published || s.exited; });
}

void arrive_and_wait(Store& store, const std::string& name, int rank, int size, std::chrono::milliseconds timeout,
                     const std::string& what) {
  store.set(rank_key(name.c_str(), rank), "1");
  std::vector<std::string> keys;
  keys.reserve(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) keys.push_back(rank_key(name.c_str(), r));
  const auto deadline = Clock::now() + timeout;
  for (auto delay = std::chrono::microseconds(200);; delay = std::min(delay * 2, std::chrono::microseconds(20000))) {
    if (store.check(keys)) return;
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(delay);
  }
  std::vector<int> missing, present;
  for (int r = 0; r < size; ++r) (store.check({keys[static_cast<size_t>(r)]}) ? present : missing).push_back(r);
  if (missing.empty()) return;  // the last one arrived just now
  std::ostringstream os;
  os << what << " timed out after " << static_cast<double>(timeout.count()) / 1000.0 << " s on rank " << rank << ": ";
  for (size_t i = 0; i < missing.size(); ++i) os << (i ? "; " : "") << "rank " << missing[i] << " did not arrive";
  os << " (ranks " << list_ranks(present) << " did; known from their arrival keys in the store). "
     << "What to do: check that every rank was started and read the missing ranks' own output for an error at "
        "start-up; raise DTRAIN_TIMEOUT_S if they are only slow to start";
  DTRAIN_THROW(os.str());
}

}  // namespace dtrain::comm
