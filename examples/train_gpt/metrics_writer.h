// JSON Lines metrics (docs: /DESIGN "Contracts"): one object per line,
// flushed as written, so a crash loses at most the line being written.
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "dtrain/error.h"

class MetricsWriter {
 public:
  MetricsWriter() = default;
  explicit MetricsWriter(const std::string& path) : path_(path) {
    if (path.empty()) return;
    file_ = std::fopen(path.c_str(), "w");
    DTRAIN_CHECK(file_ != nullptr, "cannot open --metrics-out file ", path);
  }
  ~MetricsWriter() {
    if (file_) std::fclose(file_);
  }
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  void write(const nlohmann::json& object) {
    if (!file_) return;
    const std::string line = object.dump() + "\n";
    DTRAIN_CHECK(std::fwrite(line.data(), 1, line.size(), file_) == line.size() && std::fflush(file_) == 0,
                 "writing metrics to ", path_, " failed (disk full?)");
  }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};
