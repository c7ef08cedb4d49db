// The PyTorch SDPA baseline of the attention benchmarks
// (benchmarks/cuda_ops/sdpa_baseline.h): it must never stop a benchmark. A
// missing interpreter, or torch or a GPU missing behind it, gives one row
// saying why; where torch and a GPU are there, one row per sequence length.
#include <catch2/catch.hpp>
#include <string>

#include "sdpa_baseline.h"

using dtrain::bench::run_sdpa_baseline;
using dtrain::bench::sdpa_skipped_reason;
using dtrain::bench::SdpaRequest;

namespace {

SdpaRequest small_request() {
  SdpaRequest r;
  r.script = DTRAIN_SDPA_SCRIPT;
  r.B = 1;
  r.NH = 2;
  r.hs = 64;
  r.T = {64, 128};
  r.iters = 2;
  return r;
}

}  // namespace

TEST_CASE("sdpa baseline: a missing interpreter gives one skipped row naming the command", "[bench][sdpa]") {
  SdpaRequest r = small_request();
  r.python = "/nonexistent/python3";
  const auto rows = run_sdpa_baseline(r);
  REQUIRE(rows.size() == 1);
  const std::string why = sdpa_skipped_reason(rows);
  CHECK(why.find("/nonexistent/python3") != std::string::npos);
  CHECK(why.find("printed no result") != std::string::npos);
}

TEST_CASE("sdpa baseline: the real script gives a reason or one timed row per T", "[bench][sdpa]") {
  const auto rows = run_sdpa_baseline(small_request());
  const std::string why = sdpa_skipped_reason(rows);
  if (!why.empty()) {
    // This machine lacks python3, torch or a CUDA device: the reason says which.
    INFO(why);
    CHECK(rows.size() == 1);
    const bool named = why.find("torch") != std::string::npos || why.find("printed no result") != std::string::npos;
    CHECK(named);
    return;
  }
  REQUIRE(rows.size() == 2);
  for (size_t i = 0; i < rows.size(); ++i) {
    CHECK(rows[i].value("T", int64_t{0}) == small_request().T[i]);
    CHECK(rows[i].value("fwd_tflops", 0.0) > 0.0);
    CHECK(rows[i].value("fwd_bwd_tflops", 0.0) > 0.0);
  }
}
