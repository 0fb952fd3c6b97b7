// Owns how tests read an expected troupe::Error: error_of (any kind, checked) and config_error (kConfig, one line).
#pragma once

#include <catch2/catch.hpp>
#include <functional>
#include <string>

#include "runtime/error.h"

// The message of the troupe::Error of `kind` that `fn` throws; fails the test when it throws nothing.
inline std::string error_of(troupe::ErrorKind kind, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const troupe::Error& e) {
    CHECK(e.kind() == kind);
    return e.what();
  }
  FAIL("expected a troupe::Error");
  return {};
}

// The message of the configuration error `fn` throws, which must be one line.
inline std::string config_error(const std::function<void()>& fn) {
  const std::string message = error_of(troupe::ErrorKind::kConfig, fn);
  CHECK(message.find('\n') == std::string::npos);
  return message;
}
