// Every tensor of two checkpoints compared bitwise (the checkpoint tests of
// resume, resharding and precision changes).
#pragma once

#include <catch2/catch.hpp>
#include <string>

#include "check_close.h"
#include "dtrain/checkpoint.h"

namespace dtrain::testing {

// Every tensor of two checkpoints, bitwise.
inline void same_tensors(const std::string& a, const std::string& b) {
  checkpoint::Reader ra(a), rb(b);
  const auto names = ra.tensor_names();
  REQUIRE(names == rb.tensor_names());
  CHECK(names.size() > 4);
  for (const auto& n : names) {
    INFO(n);
    CHECK_CLOSE(rb.read_full(n), ra.read_full(n), 0.0);
  }
}

}  // namespace dtrain::testing
