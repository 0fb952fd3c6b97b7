// Formats invariant failures.
#include "runtime/error.h"

namespace troupe::detail {

void fail_check(const char* file, int line, const char* condition, const std::string& detail) {
  std::string msg = std::string("internal error: check failed at ") + file + ":" + std::to_string(line) + ": " + condition;
  if (!detail.empty()) msg += " (" + detail + ")";
  throw InvariantError(msg);
}

}  // namespace troupe::detail
