#include "bench_suite.h"

#include <cstdio>

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

}  // namespace dtrain::bench
