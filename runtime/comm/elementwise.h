// Owns the elementwise sum every collective uses, one definition per element type.
//
// Floats add as IEEE numbers (commutative, not associative: the collectives fix the order). Integers add
// as their unsigned counterparts — the wrapping two's-complement sum, defined on overflow and
// associative, which is what troupe::ExactSum (__int128 fixed point, runtime/exact_sum.h) relies on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace troupe::comm {

// The element types the collectives are instantiated for.
template <class T>
inline constexpr bool kCollectiveType = std::is_same_v<T, float> || std::is_same_v<T, double> ||
                                        std::is_same_v<T, std::int64_t> || std::is_same_v<T, __int128>;

template <class T>
inline T add(T a, T b) {
  static_assert(kCollectiveType<T>, "collectives support float, double, std::int64_t and __int128");
  if constexpr (std::is_same_v<T, __int128>) {
    return static_cast<__int128>(static_cast<unsigned __int128>(a) + static_cast<unsigned __int128>(b));
  } else if constexpr (std::is_same_v<T, std::int64_t>) {
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b));
  } else {
    return a + b;
  }
}

// dst[i] = first[i] + second[i] for i < n, in that operand order. dst may alias first or second.
template <class T>
inline void add_into(T* dst, const T* first, const T* second, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = add(first[i], second[i]);
}

}  // namespace troupe::comm
