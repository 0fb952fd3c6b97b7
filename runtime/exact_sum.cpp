// Exact sums: float <-> 128-bit fixed point, by hand so the conversion is exact, fast and the same everywhere.
#include "runtime/exact_sum.h"

#include <bit>
#include <cmath>
#include <limits>

namespace troupe {

namespace {

constexpr ExactSum kPoisoned = kExactOverflow / 2;  // 2^115

bool overflowed(ExactSum s) { return s >= kPoisoned || s <= -kPoisoned; }

// Fixed point of an already range-checked double: the integer part of x * 2^80, truncated toward zero.
ExactSum fixed_of(double x) {
  const std::uint64_t bits = std::bit_cast<std::uint64_t>(x);
  const int biased = static_cast<int>((bits >> 52) & 0x7FF);
  if (biased == 0) return 0;  // zero or subnormal: far below 2^-80
  const std::uint64_t mantissa = (bits & ((std::uint64_t{1} << 52) - 1)) | (std::uint64_t{1} << 52);
  // x = mantissa * 2^(biased - 1075); x * 2^80 = mantissa * 2^(biased - 995).
  const int shift = biased - 995;
  unsigned __int128 m = mantissa;
  if (shift >= 0) m <<= shift;                    // shift < 32 + 80 - 52 = 60 for |x| < 2^32
  else m = shift <= -64 ? 0 : m >> (-shift);      // truncation toward zero
  const ExactSum v = static_cast<ExactSum>(m);
  return (bits >> 63) ? -v : v;
}

}  // namespace

ExactSum to_exact(float x) {
  if (!(std::fabs(x) < static_cast<float>(kExactLimit))) return kExactOverflow;
  return fixed_of(static_cast<double>(x));
}

float from_exact(ExactSum s) {
  if (overflowed(s)) return std::numeric_limits<float>::quiet_NaN();
  // One rounding: int128 -> float is correctly rounded; scaling by a power of two is exact (the result
  // is far from the subnormal range except for sums below 2^-126, where a second rounding is harmless).
  return std::ldexp(static_cast<float>(s), -kExactFracBits);
}

ExactSum to_exact_double(double x) {
  if (!(std::fabs(x) < kExactLimit)) return kExactOverflow;
  return fixed_of(x);
}

double from_exact_double(ExactSum s) {
  if (overflowed(s)) return std::numeric_limits<double>::quiet_NaN();
  return std::ldexp(static_cast<double>(s), -kExactFracBits);  // int128 -> double rounds once
}

void add_exact(std::span<ExactSum> acc, const float* x) {
  for (std::size_t i = 0; i < acc.size(); ++i) acc[i] = exact_add(acc[i], to_exact(x[i]));
}

void add_exact_scaled(std::span<ExactSum> acc, float a, const float* b) {
  for (std::size_t i = 0; i < acc.size(); ++i) {
    const double p = static_cast<double>(a) * static_cast<double>(b[i]);
    acc[i] = exact_add(acc[i], std::fabs(p) < kExactLimit ? fixed_of(p) : kExactOverflow);
  }
}

ExactSum exact_dot(const float* a, const float* b, std::size_t n) { return exact_dot_strided(a, b, 1, n); }

ExactSum exact_dot_strided(const float* a, const float* b, std::size_t b_stride, std::size_t n) {
  // Two accumulators: the additions are integer, so how they are grouped changes nothing.
  ExactSum acc[2] = {0, 0};
  for (std::size_t i = 0; i < n; ++i) {
    const double p = static_cast<double>(a[i]) * static_cast<double>(b[i * b_stride]);
    acc[i & 1] = exact_add(acc[i & 1], std::fabs(p) < kExactLimit ? fixed_of(p) : kExactOverflow);
  }
  return exact_add(acc[0], acc[1]);
}

}  // namespace troupe
