// Verdicts, the printed verdict table and report.json (see report.h).
#include "report.h"

#include <fstream>

#include "dtrain/error.h"

namespace dtrain::bench {

std::string verdict_of(const Check& c) {
  if (c.broken) return kVerdictFailed;
  if (c.reference <= 0) return kVerdictOk;  // nothing to compare with: the measurement ran
  const double ratio = c.value / c.reference;
  if (ratio >= c.ok_at) return kVerdictOk;
  if (ratio < c.fail_below) return kVerdictFailed;
  return kVerdictBelow;
}

void Report::add_check(const Check& c) {
  checks_.push_back(c);
}

void Report::add_row(const std::string& suite, const nlohmann::json& row) {
  doc_["rows"][suite].push_back(row);
}

std::string Report::overall() const {
  bool below = false;
  for (const Check& c : checks_) {
    const std::string v = verdict_of(c);
    if (v == kVerdictFailed) return kVerdictFailed;
    below = below || v == kVerdictBelow;
  }
  return below ? kVerdictBelow : kVerdictOk;
}

void Report::print(std::FILE* out) const {
  std::fprintf(out, "\n# %-10s %-38s %12s %-15s %12s %7s %-14s %s\n", "suite", "check", "value", "unit", "reference",
               "ratio", "threshold", "verdict");
  for (const Check& c : checks_) {
    const bool has_ref = c.reference > 0;
    char ref[32] = "-", ratio[16] = "-", threshold[32] = "-";
    if (has_ref) {
      std::snprintf(ref, sizeof ref, "%.4g", c.reference);
      std::snprintf(ratio, sizeof ratio, "%.2f", c.value / c.reference);
      std::snprintf(threshold, sizeof threshold, "ok>=%.2f", c.ok_at);
    }
    std::fprintf(out, "  %-10s %-38s %12.4g %-15s %12s %7s %-14s %s\n", c.suite.c_str(), c.name.c_str(), c.value,
                 c.unit.c_str(), ref, ratio, threshold, verdict_of(c).c_str());
    if (!c.detail.empty()) std::fprintf(out, "  %-10s   %s\n", "", c.detail.c_str());
  }
  size_t counts[3] = {0, 0, 0};
  for (const Check& c : checks_) {
    const std::string v = verdict_of(c);
    ++counts[v == kVerdictOk ? 0 : v == kVerdictBelow ? 1 : 2];
  }
  std::fprintf(out, "\n# overall: %s (%zu ok, %zu below expectation, %zu failed, of %zu checks)\n", overall().c_str(),
               counts[0], counts[1], counts[2], checks_.size());
  std::fflush(out);
}

nlohmann::json Report::to_json() const {
  nlohmann::json doc = doc_;
  doc["checks"] = nlohmann::json::array();
  for (const Check& c : checks_) {
    doc["checks"].push_back(
        {{"suite", c.suite},
         {"name", c.name},
         {"value", c.value},
         {"unit", c.unit},
         {"reference", c.reference > 0 ? nlohmann::json(c.reference) : nlohmann::json(nullptr)},
         {"reference_kind", c.reference_kind},
         {"ratio", c.reference > 0 ? nlohmann::json(c.value / c.reference) : nlohmann::json(nullptr)},
         {"ok_at", c.ok_at},
         {"fail_below", c.fail_below},
         {"verdict", verdict_of(c)},
         {"detail", c.detail}});
  }
  doc["overall"] = overall();
  if (!doc.contains("rows")) doc["rows"] = nlohmann::json::object();
  return doc;
}

void Report::write(const std::string& path) const {
  const std::string tmp = path + ".partial";
  {
    std::ofstream out(tmp, std::ios::trunc);
    DTRAIN_CHECK(out.good(), "cannot write the report '", tmp, "' (does --out name a writable folder?)");
    out << to_json().dump(2) << "\n";
    DTRAIN_CHECK(out.good(), "writing the report '", tmp, "' failed (disk full?)");
  }
  DTRAIN_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename '", tmp, "' to '", path, "'");
}

}  // namespace dtrain::bench
