#include "dtrain/parallel/trace.h"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <utility>

namespace dtrain::parallel {

Trace::Trace() : origin_(std::chrono::steady_clock::now()) {}

double Trace::now_us() const {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - origin_).count();
}

size_t Trace::begin(const std::string& kind, const std::string& name) {
  const double t = now_us();
  std::lock_guard<std::mutex> lock(mutex_);
  events_.push_back({kind, name, t, -1});
  return events_.size() - 1;
}

void Trace::end(size_t index) {
  const double t = now_us();
  std::lock_guard<std::mutex> lock(mutex_);
  if (index < events_.size()) events_[index].end_us = t;
}

void Trace::add(const std::string& kind, const std::string& name, double start_us, double end_us) {
  std::lock_guard<std::mutex> lock(mutex_);
  events_.push_back({kind, name, start_us, end_us});
}

std::vector<TraceEvent> Trace::events() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return events_;
}

void Trace::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  events_.clear();
}

std::string Trace::to_jsonl() const {
  std::ostringstream os;
  for (const auto& e : events()) {
    char line[256];
    std::snprintf(line, sizeof(line), "{\"kind\":\"%s\",\"name\":\"%s\",\"start_us\":%.1f,\"end_us\":%.1f}\n",
                  e.kind.c_str(), e.name.c_str(), e.start_us, e.end_us);
    os << line;
  }
  return os.str();
}

namespace {
using Interval = std::pair<double, double>;

std::vector<Interval> merged(std::vector<Interval> v) {
  std::sort(v.begin(), v.end());
  std::vector<Interval> out;
  for (const auto& iv : v) {
    if (!out.empty() && iv.first <= out.back().second) {
      out.back().second = std::max(out.back().second, iv.second);
    } else {
      out.push_back(iv);
    }
  }
  return out;
}

std::vector<Interval> intervals(const std::vector<TraceEvent>& events, const std::string& kind) {
  std::vector<Interval> v;
  for (const auto& e : events) {
    if (e.kind == kind && e.end_us >= e.start_us) v.emplace_back(e.start_us, e.end_us);
  }
  return merged(std::move(v));
}
}  // namespace

OverlapStats overlap(const std::vector<TraceEvent>& events, const std::string& kind, const std::string& cover_kind) {
  OverlapStats s;
  const auto a = intervals(events, kind);
  const auto b = intervals(events, cover_kind);
  for (const auto& x : a) {
    s.total_us += x.second - x.first;
    for (const auto& y : b) {
      const double lo = std::max(x.first, y.first), hi = std::min(x.second, y.second);
      if (hi > lo) s.hidden_us += hi - lo;
    }
  }
  return s;
}

}  // namespace dtrain::parallel
