// The verdict rule of dtrain-bench (benchmarks/comm/report.h): ok at or above
// ok_at x reference, failed below fail_below x reference or when broken,
// below expectation in between; the overall line takes the worst.
#include <catch2/catch.hpp>

#include "report.h"

using namespace dtrain::bench;

namespace {

Check check(double value, double reference, bool broken = false) {
  Check c;
  c.suite = "kernels";
  c.name = "GEMM";
  c.value = value;
  c.reference = reference;
  c.ok_at = 0.6;
  c.fail_below = 0.3;
  c.broken = broken;
  return c;
}

}  // namespace

TEST_CASE("a check's verdict follows its two thresholds") {
  CHECK(verdict_of(check(796, 989.5)) == kVerdictOk);  // 0.80 of the H200's bf16 datasheet
  CHECK(verdict_of(check(60, 100)) == kVerdictOk);     // exactly ok_at
  CHECK(verdict_of(check(59.9, 100)) == kVerdictBelow);
  CHECK(verdict_of(check(30, 100)) == kVerdictBelow);  // exactly fail_below
  CHECK(verdict_of(check(29.9, 100)) == kVerdictFailed);
  CHECK(verdict_of(check(100, 100, true)) == kVerdictFailed);  // wrong results whatever the speed
  CHECK(verdict_of(check(5, 0)) == kVerdictOk);                // no reference: it ran
}

TEST_CASE("the overall line is the worst verdict, and the JSON carries every field") {
  Report r;
  CHECK(r.overall() == kVerdictOk);
  r.add_check(check(90, 100));
  CHECK(r.overall() == kVerdictOk);
  r.add_check(check(50, 100));
  CHECK(r.overall() == kVerdictBelow);
  r.add_check(check(10, 100));
  CHECK(r.overall() == kVerdictFailed);
  const auto j = r.to_json();
  REQUIRE(j["checks"].size() == 3);
  CHECK(j["checks"][1]["verdict"] == kVerdictBelow);
  CHECK(j["checks"][1]["ratio"].get<double>() == Approx(0.5));
  CHECK(j["overall"] == kVerdictFailed);
  CHECK(j["rows"].is_object());
}
