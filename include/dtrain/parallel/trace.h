// Trace: timestamped intervals the data-parallel engine records (when asked)
// so tests and benchmarks can see what overlapped with what.
//
// Kinds: "forward", "backward" (the compute part: from the model's
// pre_backward to its last gradient), "backward_wait" (waiting for the
// remaining collectives), "reduce" (a bucket's all-reduce or reduce-scatter,
// from issue to completion), "gather" (a ZeRO-3 unit's all-gather, from
// issue to completion; stages 1-2: the post-update parameter all-gather of a
// bucket), "compute" (stage 3: a unit's forward or backward; stages 1-2: a
// module's forward; in both cases from when its parameters arrived), "step"
// (the optimizer update, issuing the stage 1-2 parameter all-gathers).
// Times are microseconds since the trace was created (steady clock).
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

namespace dtrain::parallel {

struct TraceEvent {
  std::string kind;
  std::string name;  // bucket / unit / module name
  double start_us = 0;
  double end_us = -1;  // -1 while open
};

class Trace {
 public:
  Trace();
  double now_us() const;
  // Returns the event's index, for end().
  size_t begin(const std::string& kind, const std::string& name);
  void end(size_t index);
  void add(const std::string& kind, const std::string& name, double start_us, double end_us);
  std::vector<TraceEvent> events() const;
  void clear();
  // JSON Lines, one object per event.
  std::string to_jsonl() const;

 private:
  std::chrono::steady_clock::time_point origin_;
  mutable std::mutex mutex_;
  std::vector<TraceEvent> events_;
};

// Length of the union of intervals of `kind` (optionally only events whose
// name starts with `name_prefix`), and the part of it that lies inside the
// union of intervals of `cover_kind`. Used for "fraction of communication
// hidden behind backward".
struct OverlapStats {
  double total_us = 0;
  double hidden_us = 0;
  double fraction() const { return total_us > 0 ? hidden_us / total_us : 1.0; }
};
OverlapStats overlap(const std::vector<TraceEvent>& events, const std::string& kind, const std::string& cover_kind);

}  // namespace dtrain::parallel
