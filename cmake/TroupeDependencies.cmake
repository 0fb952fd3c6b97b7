# Finds troupe's Debian-packaged dependencies and exposes them as imported targets.
find_package(Threads REQUIRED)
find_package(ZLIB REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(fmt REQUIRED)
find_package(CLI11 QUIET)
if(NOT TARGET CLI11::CLI11)
  find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 INTERFACE ${CLI11_INCLUDE_DIR})
endif()
find_package(PkgConfig REQUIRED)
pkg_check_modules(TOMLPP REQUIRED IMPORTED_TARGET tomlplusplus)

# OpenBLAS, single-threaded build: troupe splits matrix products over its own thread pool, so that one
# pool owns the cores (no OpenBLAS threads competing with troupe's) and results do not depend on how
# OpenBLAS would have split the work.
find_library(TROUPE_OPENBLAS_SERIAL
  NAMES libopenblas.a openblas
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-serial
  NO_DEFAULT_PATH)
if(NOT TROUPE_OPENBLAS_SERIAL)
  message(FATAL_ERROR "single-threaded OpenBLAS not found: install libopenblas-serial-dev (scripts/setup-deps does)")
endif()
find_path(TROUPE_CBLAS_INCLUDE cblas.h PATHS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE} /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-serial REQUIRED)
add_library(troupe_blas INTERFACE)
target_link_libraries(troupe_blas INTERFACE ${TROUPE_OPENBLAS_SERIAL} Threads::Threads m)
target_include_directories(troupe_blas INTERFACE ${TROUPE_CBLAS_INCLUDE})

# CAF 0.17 ships no CMake config: define its imported targets by hand.
find_path(CAF_INCLUDE_DIR caf/all.hpp)
find_library(CAF_CORE_LIBRARY caf_core)
find_library(CAF_IO_LIBRARY caf_io)
if(CAF_INCLUDE_DIR AND CAF_CORE_LIBRARY AND CAF_IO_LIBRARY)
  add_library(caf::core SHARED IMPORTED)
  set_target_properties(caf::core PROPERTIES IMPORTED_LOCATION ${CAF_CORE_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${CAF_INCLUDE_DIR} INTERFACE_LINK_LIBRARIES Threads::Threads)
  add_library(caf::io SHARED IMPORTED)
  set_target_properties(caf::io PROPERTIES IMPORTED_LOCATION ${CAF_IO_LIBRARY}
    INTERFACE_LINK_LIBRARIES caf::core)
  set(TROUPE_HAVE_CAF ON)
else()
  message(FATAL_ERROR "CAF 0.17 not found: install libcaf-dev (scripts/setup-deps does)")
endif()

find_package(CapnProto REQUIRED)
find_package(Boost 1.74 REQUIRED)
