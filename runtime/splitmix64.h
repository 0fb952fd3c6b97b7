// Owns SplitMix64 (Steele, Lea and Flood, 2014): the finaliser that turns a 64-bit value into a well-mixed
// one, and the generator that steps a state by the golden gamma. Data orders, initialisations, hashed features
// and PowerSGD's projections draw from it, so every bitwise reference depends on it staying as it is.
#pragma once

#include <cstdint>

namespace troupe {

// 2^64 / the golden ratio, odd: the generator's step.
inline constexpr std::uint64_t kSplitMixGamma = 0x9E3779B97F4A7C15ull;

// The finaliser: a bijection of 64-bit values whose every output bit depends on every input bit.
inline std::uint64_t splitmix64_mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The generator: steps `state` and returns the mixed new state.
inline std::uint64_t splitmix64_next(std::uint64_t& state) { return splitmix64_mix(state += kSplitMixGamma); }

}  // namespace troupe
