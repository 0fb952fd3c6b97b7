// Catch2's main for troupe_tests.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
