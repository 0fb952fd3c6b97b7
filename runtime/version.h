// Owns troupe's version string (the project version in CMakeLists.txt), as weight files record it.
#pragma once

#include <string_view>

namespace troupe {

// "0.1.0": the VERSION of CMakeLists.txt's project() for the build that compiled this library.
std::string_view troupe_version();

}  // namespace troupe
