// The pieces every suite shares: the registry, the metrics file, the progress
// line, the time-bounded call loop and the slow-rank test hook.
#include "bench_suite.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "dtrain/error.h"

namespace dtrain::bench {

std::vector<std::unique_ptr<BenchSuite>>& suite_registry() {
  static std::vector<std::unique_ptr<BenchSuite>> suites;
  return suites;
}

MetricsWriter::MetricsWriter(const std::string& path) : path_(path) {
  if (!path_.empty()) tmp_path_ = path_ + ".partial";
}

MetricsWriter::~MetricsWriter() {
  if (!out_.is_open()) return;
  out_.close();
  std::rename(tmp_path_.c_str(), path_.c_str());
}

void MetricsWriter::write(const nlohmann::json& object) {
  if (path_.empty()) return;
  if (!out_.is_open()) {
    // Opened on first use, so ranks that never write leave no file behind.
    out_.open(tmp_path_, std::ios::trunc);
    DTRAIN_CHECK(out_.good(), "cannot write --metrics-out file '", tmp_path_, "'");
  }
  out_ << object.dump() << "\n";
  out_.flush();
}

void Progress::say(const std::string& suite, const std::string& what) const {
  if (!enabled_) return;
  std::fprintf(stderr, "[dtrain-bench %5.1fs] %s: %s\n", seconds_since(start_), suite.c_str(), what.c_str());
  std::fflush(stderr);
}

std::vector<double> gather_from_ranks(comm::Communicator& comm, double mine) {
  Tensor one = Tensor::full({1}, mine, DType::f32);
  Tensor all = Tensor::zeros({comm.size()}, DType::f32);
  comm.all_gather(one, all).wait();
  std::vector<double> out(static_cast<size_t>(comm.size()));
  for (int r = 0; r < comm.size(); ++r) out[static_cast<size_t>(r)] = all.item(r);
  return out;
}

double median_of(std::vector<double> x) {
  if (x.empty()) return 0;
  std::nth_element(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(x.size() / 2), x.end());
  return x[x.size() / 2];
}

double TimedCalls::median() const {
  return median_of(seconds);
}

double TimedCalls::best() const {
  return seconds.empty() ? 0 : *std::min_element(seconds.begin(), seconds.end());
}

TimedCalls time_calls(const std::function<void()>& call, int max_calls, double max_seconds) {
  TimedCalls t;
  const auto start = Clock::now();
  for (int i = 0; i < max_calls; ++i) {
    const auto t0 = Clock::now();
    call();
    t.seconds.push_back(seconds_since(t0));
    if (i + 1 < max_calls && seconds_since(start) > max_seconds) {
      t.cut_short = true;
      break;
    }
  }
  return t;
}

double slow_rank_factor(int rank) {
  const char* hook = std::getenv("DTRAIN_BENCH_SLOW_RANK");
  if (hook == nullptr || *hook == '\0') return 1.0;
  const std::string s = hook;
  const size_t colon = s.find(':');
  int slow = -1;
  double factor = 4.0;
  try {
    slow = std::stoi(s.substr(0, colon));
    if (colon != std::string::npos) factor = std::stod(s.substr(colon + 1));
  } catch (const std::exception&) {
    DTRAIN_THROW("cannot parse DTRAIN_BENCH_SLOW_RANK='", s, "' (use RANK or RANK:FACTOR, e.g. 1:4)");
  }
  DTRAIN_CHECK(factor >= 1.0, "DTRAIN_BENCH_SLOW_RANK factor must be >= 1, got ", factor);
  return rank == slow ? factor : 1.0;
}

}  // namespace dtrain::bench
