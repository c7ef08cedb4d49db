#include "dtrain/error.h"

#include <cstring>

namespace dtrain::detail {

void throw_error(const char* condition, const char* file, int line, const std::string& message) {
  // Keep only the path below the project root so messages stay short.
  const char* short_file = file;
  for (const char* marker : {"/src/", "/kernels/", "/include/", "/tests/", "/examples/", "/benchmarks/", "/python/"}) {
    if (const char* p = std::strstr(file, marker)) {
      short_file = p + 1;
      break;
    }
  }
  std::ostringstream os;
  os << message;
  if (condition != nullptr) os << " [check failed: " << condition << "]";
  os << " (" << short_file << ":" << line << ")";
  throw Error(os.str());
}

}  // namespace dtrain::detail
