// dtrain::Error and the check macros every layer uses.
//
// Errors carry what failed (the condition or statement), where (file:line) and
// a message saying what to do about it. Library code never aborts on user input.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace dtrain {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
[[noreturn]] void throw_error(const char* condition, const char* file, int line, const std::string& message);

// Joins any streamable arguments into one string ("expected ", 3, " got ", 4).
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace dtrain

// DTRAIN_CHECK(cond, parts...): throws dtrain::Error naming the condition, the
// file and line, and the message built from parts when cond is false.
#define DTRAIN_CHECK(cond, ...)                                                                        \
  do {                                                                                                 \
    if (!(cond)) {                                                                                     \
      ::dtrain::detail::throw_error(#cond, __FILE__, __LINE__, ::dtrain::detail::concat(__VA_ARGS__)); \
    }                                                                                                  \
  } while (0)

// DTRAIN_THROW(parts...): unconditional failure with the same format.
#define DTRAIN_THROW(...) \
  ::dtrain::detail::throw_error(nullptr, __FILE__, __LINE__, ::dtrain::detail::concat(__VA_ARGS__))
