// troupe_version(): TROUPE_VERSION comes from runtime/CMakeLists.txt (the project's VERSION).
#include "runtime/version.h"

#ifndef TROUPE_VERSION
#error "TROUPE_VERSION must be defined by the build (runtime/CMakeLists.txt)"
#endif

namespace troupe {

std::string_view troupe_version() { return TROUPE_VERSION; }

}  // namespace troupe
