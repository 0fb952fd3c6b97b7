// Owns exact gradient sums: 128-bit fixed-point accumulation of float contributions, whose result does not depend on the order of the additions.
//
// Deterministic mode (train.deterministic) promises that a gradient is bitwise the same however a batch
// is split: over micro-batches, pipeline stages, data-parallel replicas, threads, or the algorithm of an
// allreduce. Float addition is not associative, so no fixed order can make a ring allreduce over D
// replicas equal a single device adding samples one by one. Integer addition is associative: every
// contribution (one sample's product, one row's bias gradient) is converted to a fixed-point integer
// with kExactFracBits fraction bits and summed as an integer, and only the total is rounded back to
// float. Any order, any grouping gives the same integer, hence the same float.
//
// Range and precision: contributions with |x| < 2^32 are represented; larger ones, inf and NaN poison the
// sum (it rounds to NaN, so a diverging run still shows it). Bits of a contribution below 2^-80 are
// dropped (truncated toward zero, the same way wherever the contribution is computed). Gradients live
// between about 2^-40 and 2^10, so a sum is exact to far better than float precision. Sums are plain
// wrapping integer additions (exact_add), so collectives may add them in any order.
#pragma once

#include <cstdint>
#include <span>

namespace troupe {

using ExactSum = __int128;

inline constexpr int kExactFracBits = 80;
// Contributions of this magnitude or more (and non-finite ones) poison the sum.
inline constexpr double kExactLimit = 4294967296.0;  // 2^32, i.e. fixed point below 2^112
// A poisoned contribution. Sums at or beyond 2^115 in magnitude round to NaN: up to 2^11 poisoned
// contributions stay in that range, while 8 legitimate maximal ones cannot reach it.
inline constexpr ExactSum kExactOverflow = static_cast<ExactSum>(static_cast<unsigned __int128>(1) << 116);

// x as fixed point (truncated toward zero); kExactOverflow when |x| >= 2^32 or x is not finite.
ExactSum to_exact(float x);
// The float nearest to the fixed-point value s (one rounding); NaN for an overflowed sum.
float from_exact(ExactSum s);
// The same for double contributions and results (batch-norm statistics sum per-sample doubles).
ExactSum to_exact_double(double x);
double from_exact_double(ExactSum s);

// acc[i] += to_exact(x[i]) for i < acc.size().
void add_exact(std::span<ExactSum> acc, const float* x);
// acc[i] += to_exact(a * b[i]) with the product formed in double (exact for floats), for i < acc.size().
void add_exact_scaled(std::span<ExactSum> acc, float a, const float* b);

// sum_i to_exact(a[i] * b[i]), each product formed in double (exact for floats): a dot product whose
// result does not depend on how its terms are cut into pieces (tensor parallelism's split reductions).
ExactSum exact_dot(const float* a, const float* b, std::size_t n);
// exact_dot over a strided b: sum_i to_exact(a[i] * b[i * b_stride]).
ExactSum exact_dot_strided(const float* a, const float* b, std::size_t b_stride, std::size_t n);

// Wrapping integer sum (as unsigned, so overflow is defined): what collectives use to add exact sums.
inline ExactSum exact_add(ExactSum a, ExactSum b) {
  return static_cast<ExactSum>(static_cast<unsigned __int128>(a) + static_cast<unsigned __int128>(b));
}

}  // namespace troupe
