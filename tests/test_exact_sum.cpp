// Owns the tests of exact gradient sums: fixed-point conversion, order independence, range limits.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "runtime/exact_sum.h"

using namespace troupe;

TEST_CASE("exact sums: floats in range round-trip exactly", "[exact_sum]") {
  for (float x : {0.0f, 1.0f, -1.0f, 0.1f, -3.75e-7f, 1234.5678f, 4.0e9f, -4.0e9f, 6.103515625e-05f, std::ldexp(1.0f, -80)})
    CHECK(from_exact(to_exact(x)) == x);
  // Below 2^-80 a value has nothing left: truncated toward zero.
  CHECK(to_exact(1e-25f) == 0);
  CHECK(to_exact(-1e-25f) == 0);
  // A value straddling 2^-80 keeps only its bits above it, truncated toward zero (both signs alike).
  const float straddle = std::ldexp(1.5f, -80);
  CHECK(from_exact(to_exact(straddle)) == std::ldexp(1.0f, -80));
  CHECK(from_exact(to_exact(-straddle)) == -std::ldexp(1.0f, -80));
}

TEST_CASE("exact sums do not depend on the order or grouping of the additions", "[exact_sum]") {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> expo(-40, 10);
  std::vector<float> xs(5000);
  for (float& x : xs) x = std::ldexp(mant(rng), expo(rng));

  auto sum_in_order = [](const std::vector<float>& v) {
    ExactSum s = 0;
    for (float x : v) s = exact_add(s, to_exact(x));
    return s;
  };
  const ExactSum reference = sum_in_order(xs);
  std::vector<float> shuffled = xs;
  for (int round = 0; round < 5; ++round) {
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    CHECK(sum_in_order(shuffled) == reference);
  }
  // Grouped as replicas would: partial sums of uneven slices, added in reverse.
  ExactSum grouped = 0;
  for (std::size_t end = xs.size(), begin; end > 0; end = begin) {
    begin = end > 777 ? end - 777 : 0;
    ExactSum part = 0;
    for (std::size_t i = begin; i < end; ++i) part = exact_add(part, to_exact(xs[i]));
    grouped = exact_add(grouped, part);
  }
  CHECK(grouped == reference);
  // The float sums, by contrast, do depend on the order (which is why exact sums exist).
  float forward = 0.0f, backward = 0.0f;
  for (float x : xs) forward += x;
  for (auto it = xs.rbegin(); it != xs.rend(); ++it) backward += *it;
  CHECK(forward != backward);
  // And the exact sum is the correctly rounded double-precision sum, to float precision.
  double exact = 0.0;
  for (float x : xs) exact += static_cast<double>(x);
  CHECK(from_exact(reference) == Approx(exact).epsilon(1e-6));
}

TEST_CASE("exact sums: out-of-range and non-finite contributions poison the sum to NaN", "[exact_sum]") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (float bad : {nan, inf, -inf, 5.0e9f, -1e20f}) {
    ExactSum s = to_exact(1.0f);
    s = exact_add(s, to_exact(bad));
    s = exact_add(s, to_exact(-3.0f));
    CHECK(std::isnan(from_exact(s)));
  }
  // Many poisoned contributions (one per replica, say) stay poisoned.
  ExactSum many = 0;
  for (int i = 0; i < 1000; ++i) many = exact_add(many, to_exact(inf));
  CHECK(std::isnan(from_exact(many)));
  // The largest legitimate contributions, a few at a time, do not look poisoned.
  ExactSum big = 0;
  for (int i = 0; i < 8; ++i) big = exact_add(big, to_exact(4.29e9f));
  CHECK(from_exact(big) == Approx(8 * 4.29e9));
}

TEST_CASE("add_exact and add_exact_scaled add elementwise", "[exact_sum]") {
  std::vector<ExactSum> acc(3, 0);
  const float x[3] = {1.5f, -2.0f, 0.25f};
  add_exact(acc, x);
  add_exact(acc, x);
  CHECK(from_exact(acc[0]) == 3.0f);
  CHECK(from_exact(acc[1]) == -4.0f);
  add_exact_scaled(acc, 4.0f, x);
  CHECK(from_exact(acc[2]) == 1.5f);
}
