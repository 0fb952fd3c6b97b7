// Owns the byte helpers the transport tests share (tcp, shm, link security): a message's recognisable
// contents, and a digest's hex text.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace troupe::testing {

// `n` bytes that differ by `seed` and by position, with a period far longer than a chunk (i >> 9), so that a
// misplaced, lost or repeated piece of a message shows.
inline std::vector<std::byte> pattern(std::size_t n, int seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 131 + static_cast<std::size_t>(seed) * 17 + (i >> 9)) & 0xFF);
  return v;
}

// A digest as lower-case hex, as published test vectors print it.
template <std::size_t N>
std::string hex(const std::array<std::uint8_t, N>& d) {
  std::string out;
  char buf[3];
  for (auto b : d) {
    std::snprintf(buf, sizeof buf, "%02x", b);
    out += buf;
  }
  return out;
}

}  // namespace troupe::testing
