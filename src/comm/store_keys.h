// Internal: store keys dtrain reserves for failure handling (under "__dtrain/").
#pragma once

#include <string>

namespace dtrain::comm::keys {

// Set once by whoever first sees the job fail; its value says why. Every
// communicator's watchdog polls it and fails in-flight work with that reason.
inline const std::string kPoison = "__dtrain/poison";
// Set by the store host when rank R's connection drops without a goodbye.
inline std::string lost(int rank) {
  return "__dtrain/lost/" + std::to_string(rank);
}

}  // namespace dtrain::comm::keys
