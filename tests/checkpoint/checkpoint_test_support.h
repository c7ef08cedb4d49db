// What the checkpoint tests share: a temporary directory removed afterwards,
// and every tensor of two checkpoints compared bitwise (resume, resharding,
// precision changes).
#pragma once

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "check_close.h"
#include "dtrain/checkpoint.h"

namespace dtrain::testing {

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& prefix = "/tmp/dtrain_ckpt_test_") {
    std::string pattern = prefix + "XXXXXX";
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

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
