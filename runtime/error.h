// Owns troupe's two kinds of error: broken invariants (TROUPE_CHECK) and recoverable, user-facing faults (troupe::Error).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace troupe {

// What went wrong, in categories a caller can act on. A command-line front end maps
// kUsage/kConfig/kInput to exit code 2 (bad input) and the rest to 1. kNumeric: a step whose loss or
// gradients are not finite ended the run (train.on_nonfinite = stop).
enum class ErrorKind { kUsage, kConfig, kInput, kIo, kShape, kInternal, kNumeric };

// A recoverable fault with a message that says what failed, where, and what to do.
// The library throws it instead of exiting; front ends catch it at their boundary.
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string message) : std::runtime_error(std::move(message)), kind_(kind) {}
  ErrorKind kind() const { return kind_; }
  bool is_bad_input() const {
    return kind_ == ErrorKind::kUsage || kind_ == ErrorKind::kConfig || kind_ == ErrorKind::kInput;
  }

 private:
  ErrorKind kind_;
};

// Raised by TROUPE_CHECK: a bug in troupe, not in the caller's input.
class InvariantError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

namespace detail {
[[noreturn]] void fail_check(const char* file, int line, const char* condition, const std::string& detail);

template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

}  // namespace troupe

// Checks an invariant; on failure reports file, line, the condition and the values passed after it.
#define TROUPE_CHECK(cond, ...)                                                                          \
  do {                                                                                                   \
    if (!(cond)) [[unlikely]]                                                                            \
      ::troupe::detail::fail_check(__FILE__, __LINE__, #cond, ::troupe::detail::concat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)
