// Straggler detection (see straggler.h for the method and its thresholds).
#include "comm/straggler.h"

#include <algorithm>
#include <cstdio>

namespace dtrain::comm {

namespace {

constexpr double kFactor = 3.0;
constexpr double kFloorPerCollectiveS = 0.005;
constexpr auto kLogEvery = std::chrono::seconds(60);
constexpr uint64_t kKeepWindows = 3;  // a window's keys live this long, for ranks that read late

std::string window_key(uint64_t index, int rank) {
  return "straggler/" + std::to_string(index) + "/" + std::to_string(rank);
}

}  // namespace

std::vector<StragglerVerdict> find_stragglers(const std::vector<double>& wait_s, int collectives) {
  std::vector<StragglerVerdict> found;
  if (wait_s.size() < 2 || collectives <= 0) return found;
  const double most = *std::max_element(wait_s.begin(), wait_s.end());
  std::vector<double> lag;
  lag.reserve(wait_s.size());
  for (double w : wait_s) lag.push_back((most - w) / collectives);
  // Each rank against the median of the others: with two ranks the other's
  // lag is 0, and two late ranks in four are both named.
  for (size_t r = 0; r < lag.size(); ++r) {
    if (lag[r] < kFloorPerCollectiveS) continue;
    std::vector<double> others;
    for (size_t q = 0; q < lag.size(); ++q)
      if (q != r) others.push_back(lag[q]);
    std::nth_element(others.begin(), others.begin() + static_cast<std::ptrdiff_t>(others.size() / 2), others.end());
    const double median = others[others.size() / 2];
    if (lag[r] > kFactor * median) found.push_back(StragglerVerdict{static_cast<int>(r), lag[r], median});
  }
  return found;
}

StragglerMonitor::StragglerMonitor(int rank, int size) : rank_(rank), size_(size) {}

void StragglerMonitor::record(uint64_t sequence, const std::string& op, double wait_s) {
  if (size_ < 2) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (open_count_ == 0) {
    open_.index = next_index_++;
    open_.first = sequence;
    open_.wait_s = 0;
  }
  open_.last = sequence;
  open_.last_op = op;
  open_.wait_s += wait_s;
  if (++open_count_ == kWindow) {
    finished_.push_back(open_);
    open_count_ = 0;
  }
}

void StragglerMonitor::pump(Store& store) {
  std::vector<Window> todo;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    todo.assign(finished_.begin(), finished_.end());
  }
  for (const Window& w : todo) {
    if (!w.published) {
      store.set(window_key(w.index, rank_), std::to_string(static_cast<int64_t>(w.wait_s * 1e6)));
      if (w.index >= kKeepWindows) store.delete_key(window_key(w.index - kKeepWindows, rank_));
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& f : finished_)
        if (f.index == w.index) f.published = true;
    }
  }
  for (const Window& w : todo) {
    std::vector<double> waits(static_cast<size_t>(size_));
    bool complete = true;
    for (int r = 0; r < size_ && complete; ++r) {
      if (r == rank_) {
        waits[static_cast<size_t>(r)] = w.wait_s;
        continue;
      }
      const auto v = store.try_get(window_key(w.index, r));
      if (v)
        waits[static_cast<size_t>(r)] = static_cast<double>(std::stoll(*v)) / 1e6;
      else
        complete = false;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    // Wait for the others' keys, but not past the point where they are deleted.
    if (!complete && w.index + kKeepWindows > next_index_) continue;
    finished_.erase(
        std::remove_if(finished_.begin(), finished_.end(), [&](const Window& f) { return f.index == w.index; }),
        finished_.end());
    if (!complete) continue;
    const auto stragglers = find_stragglers(waits, kWindow);
    if (stragglers.empty()) continue;
    const auto now = std::chrono::steady_clock::now();
    if (logged_ && now - last_logged_ < kLogEvery) continue;
    std::string text = "straggler: ";
    for (size_t i = 0; i < stragglers.size(); ++i) {
      char buf[256];
      std::snprintf(buf, sizeof(buf),
                    "%srank %d arrives at collectives %.1f ms later than the earliest rank on average", i ? "; " : "",
                    stragglers[i].rank, stragglers[i].lag_s * 1e3);
      text += buf;
    }
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  ", over collectives #%llu-#%llu (last: %s #%llu); the other ranks' median lag is %.1f ms. It slows "
                  "every step: check that rank's host (CPU or GPU contention, throttling, a slow data loader)",
                  static_cast<unsigned long long>(w.first), static_cast<unsigned long long>(w.last), w.last_op.c_str(),
                  static_cast<unsigned long long>(w.last), stragglers[0].others_lag_s * 1e3);
    text += buf;
    last_warning_ = text;
    last_logged_ = now;
    logged_ = true;
    std::fprintf(stderr, "[dtrain rank %d] warning: %s\n", rank_, text.c_str());
    std::fflush(stderr);
  }
}

std::string StragglerMonitor::last_warning() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_warning_;
}

}  // namespace dtrain::comm
