// Internal: straggler detection, before a slow rank turns into a timeout.
//
// Clocks of different hosts disagree, so arrival times are not compared
// directly. Each rank measures, on its own clock, how long it waited inside
// each collective (from the moment its worker started it to its end). A
// collective ends at about the same time everywhere, so a rank that arrives
// late waits less than the others by exactly its lag: over a window of
// collectives, rank r's total lag behind the earliest rank is
// max_q(wait_q) - wait_r. Each rank publishes its window total through the
// store (one key per window); every rank reads all of them and warns when
// a rank's lag is more than 3x the median lag of the others and above a
// floor of 5 ms per collective (scheduler noise on a loaded machine stays
// below it). At most one warning a minute per communicator.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "dtrain/comm/store.h"

namespace dtrain::comm {

struct StragglerVerdict {
  int rank = -1;
  double lag_s = 0;         // its mean lag per collective
  double others_lag_s = 0;  // the median of the other ranks' mean lag
};

// `wait_s[r]`: rank r's total wait over `collectives` collectives. Every rank
// whose lag is above the floor and more than 3x the median of the others'.
std::vector<StragglerVerdict> find_stragglers(const std::vector<double>& wait_s, int collectives);

class StragglerMonitor {
 public:
  static constexpr int kWindow = 20;

  StragglerMonitor(int rank, int size);
  // Worker thread: one finished collective and how long this rank waited in it.
  void record(uint64_t sequence, const std::string& op, double wait_s);
  // Liveness thread: publish finished windows, read the others', warn.
  void pump(Store& store);
  // The last warning logged (empty if none).
  std::string last_warning() const;

 private:
  struct Window {
    uint64_t index = 0;
    uint64_t first = 0, last = 0;
    std::string last_op;
    double wait_s = 0;
    bool published = false;
  };
  int rank_, size_;
  mutable std::mutex mutex_;
  Window open_;
  int open_count_ = 0;
  uint64_t next_index_ = 0;
  std::deque<Window> finished_;
  std::string last_warning_;
  std::chrono::steady_clock::time_point last_logged_{};
  bool logged_ = false;
};

}  // namespace dtrain::comm
