// What dtrain-bench found: the checks with their verdicts, the measured rows
// of each suite, and the environment, kept as one JSON document that rank 0
// writes as report.json (schema: benchmarks/report/report.schema.json).
//
// A check compares a measured value with a reference (a datasheet peak, a
// figure measured in the same run, or the median across ranks):
//   ratio = value / reference;  ok when ratio >= ok_at,
//   failed when ratio < fail_below (or when results were wrong or the
//   measurement could not run), "below expectation" in between.
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace dtrain::bench {

inline constexpr const char* kVerdictOk = "ok";
inline constexpr const char* kVerdictBelow = "below expectation";
inline constexpr const char* kVerdictFailed = "failed";

struct Check {
  std::string suite;
  std::string name;            // e.g. "GEMM bf16 4096^3"
  double value = 0;            // what was measured
  std::string unit;            // "TFLOP/s", "GB/s", "wrong elements", ...
  double reference = 0;        // what it is compared with (0: none)
  std::string reference_kind;  // "datasheet", "measured in this run", "median of ranks", "exact"
  double ok_at = 0;            // ok when value / reference >= ok_at
  double fail_below = 0;       // failed when value / reference < fail_below
  bool broken = false;         // wrong results or an error: failed whatever the ratio
  std::string detail;          // what the reader should know (rank named, rows cut short, ...)
};

// The verdict of one check (see the opening comment).
std::string verdict_of(const Check& c);

class Report {
 public:
  void add_check(const Check& c);
  // A measured row of `suite` (one size of one collective, one GEMM shape...).
  void add_row(const std::string& suite, const nlohmann::json& row);
  // A named section (environment, device facts, per-suite summaries).
  nlohmann::json& section(const std::string& name) { return doc_[name]; }
  const std::vector<Check>& checks() const { return checks_; }

  // "ok" when every check is ok, "failed" when any failed, else "below expectation".
  std::string overall() const;
  // The verdict table and the overall line, as printed at the end of a run.
  void print(std::FILE* out) const;
  nlohmann::json to_json() const;
  // Written aside and renamed, so a reader never sees half a report.
  void write(const std::string& path) const;

 private:
  nlohmann::json doc_ = nlohmann::json::object();
  std::vector<Check> checks_;
};

}  // namespace dtrain::bench
