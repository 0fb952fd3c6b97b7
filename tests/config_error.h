// Owns config_error: the message of the troupe::Error (kConfig, one line) that a callable throws.
#pragma once

#include <catch2/catch.hpp>
#include <functional>
#include <string>

#include "runtime/error.h"

inline std::string config_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const troupe::Error& e) {
    CHECK(e.kind() == troupe::ErrorKind::kConfig);
    CHECK(std::string(e.what()).find('\n') == std::string::npos);
    return e.what();
  }
  FAIL("expected a troupe::Error");
  return {};
}
