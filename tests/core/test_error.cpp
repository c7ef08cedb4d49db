#include <catch2/catch.hpp>

#include "dtrain/error.h"

TEST_CASE("DTRAIN_CHECK carries condition, file, line and message", "[error]") {
  const int got = 3;
  try {
    DTRAIN_CHECK(got == 4, "expected 4 widgets, got ", got, "; pass --widgets 4");
    FAIL("no exception");
  } catch (const dtrain::Error& e) {
    const std::string what = e.what();
    CHECK_THAT(what, Catch::Contains("expected 4 widgets, got 3; pass --widgets 4"));
    CHECK_THAT(what, Catch::Contains("check failed: got == 4"));
    CHECK_THAT(what, Catch::Contains("tests/core/test_error.cpp:"));
  }
  CHECK_THROWS_AS(DTRAIN_THROW("boom"), std::runtime_error);
}
