// Owns check_same_weights: two weight files must hold the same tensors, by name, bit for bit.
#pragma once

#include <catch2/catch.hpp>

#include <cstring>
#include <string>

#include "runtime/io/safetensors.h"

inline void check_same_weights(const std::string& expected_path, const std::string& actual_path) {
  const auto expected = troupe::load_safetensors(expected_path);
  const auto actual = troupe::load_safetensors(actual_path);
  REQUIRE(expected.size() == actual.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    INFO(expected[i].first);
    CHECK(expected[i].first == actual[i].first);
    const troupe::Tensor& a = expected[i].second;
    const troupe::Tensor& b = actual[i].second;
    REQUIRE(a.shape() == b.shape());
    CHECK(std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
  }
}
