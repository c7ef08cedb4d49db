// CHECK_CLOSE / REQUIRE_CLOSE: Catch2 assertions over compare() (compare.h),
// so a failure prints what was wrong (shape, first non-finite index, or the
// worst element) next to the expression.
#pragma once

#include <catch2/catch.hpp>

#include "compare.h"

#define DTRAIN_CLOSE_IMPL(ASSERT, got, ref, ...)                                                             \
  do {                                                                                                       \
    const ::dtrain::testing::Comparison dtrain_cmp_ = ::dtrain::testing::compare((got), (ref), __VA_ARGS__); \
    INFO(#got " vs " #ref ": " << dtrain_cmp_.message);                                                      \
    ASSERT(dtrain_cmp_.ok);                                                                                  \
  } while (false)

// CHECK_CLOSE(got, ref, tol) or CHECK_CLOSE(got, ref, tol, floor).
#define CHECK_CLOSE(got, ref, ...) DTRAIN_CLOSE_IMPL(CHECK, got, ref, __VA_ARGS__)
#define REQUIRE_CLOSE(got, ref, ...) DTRAIN_CLOSE_IMPL(REQUIRE, got, ref, __VA_ARGS__)
