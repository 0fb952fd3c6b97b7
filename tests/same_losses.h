// Owns check_same_losses: two --dump-losses files must hold the same steps with the same loss bits.
#pragma once

#include <catch2/catch.hpp>

#include <sstream>
#include <string>

#include "tests/troupe_command.h"

// A --dump-losses line up to its first timing figure (tokens_per_s, or samples_per_s for image models):
// the timings differ run to run.
inline std::string before_timing(const std::string& line) {
  const auto tokens = line.find("\"tokens_per_s\"");
  return line.substr(0, tokens != std::string::npos ? tokens : line.find("\"samples_per_s\""));
}

// Both files hold `steps` lines, equal up to their timings: the dump prints 17 significant digits, the
// double's exact value, so equal text is equal loss bits (validation losses included).
inline void check_same_losses(const std::string& expected_path, const std::string& actual_path, int steps) {
  std::stringstream a(slurp(expected_path)), b(slurp(actual_path));
  std::string la, lb;
  int lines = 0;
  while (std::getline(a, la) && std::getline(b, lb)) {
    CHECK(before_timing(la) == before_timing(lb));
    ++lines;
  }
  CHECK(lines == steps);
}
