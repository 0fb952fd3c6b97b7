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
# OpenSSL's libcrypto (libssl-dev): AES-256-GCM and HKDF for the TCP links' frame integrity and
# encryption (net/tcp/link_security.h).
pkg_check_modules(LIBCRYPTO REQUIRED IMPORTED_TARGET libcrypto)

# OpenBLAS. troupe splits matrix products over its own thread pool and calls BLAS from several
# threads at once, each call single-threaded (openblas_set_num_threads(1)). The pthread build is the
# one to link: Debian's serial build does not lock its internal buffers, and concurrent calls into it
# corrupt results (seen here as one attention head in a few hundred computed from garbage).
set(_troupe_blas_dir /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-pthread)
find_library(TROUPE_OPENBLAS NAMES openblas PATHS ${_troupe_blas_dir} NO_DEFAULT_PATH)
find_path(TROUPE_CBLAS_INCLUDE cblas.h PATHS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-pthread NO_DEFAULT_PATH)
if(NOT TROUPE_OPENBLAS OR NOT TROUPE_CBLAS_INCLUDE)
  message(FATAL_ERROR "OpenBLAS (pthread build) not found: install libopenblas-pthread-dev (scripts/setup-deps does)")
endif()
add_library(troupe_blas INTERFACE)
target_link_libraries(troupe_blas INTERFACE ${TROUPE_OPENBLAS} Threads::Threads m)
target_include_directories(troupe_blas INTERFACE ${TROUPE_CBLAS_INCLUDE})
# The soname (libopenblas.so.0) is shared with the serial build: pin the run-time search to this one.
target_link_options(troupe_blas INTERFACE "LINKER:-rpath,${_troupe_blas_dir}")

include(${CMAKE_CURRENT_LIST_DIR}/TroupeCaf.cmake)

find_package(CapnProto REQUIRED)
find_package(Boost 1.74 REQUIRED)
