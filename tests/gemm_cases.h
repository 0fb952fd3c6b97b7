// Owns the cases the matrix-product tests share (test_packed_sgemm.cpp, test_bf16_gemm.cpp): random operands,
// one product's inputs for each transpose and beta, and its error against a double product in units of its
// rounding bound.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace troupe::gemm_test {

inline std::vector<float> random_floats(std::mt19937_64& rng, std::size_t n) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

struct Mnk {
  std::int64_t m, n, k;
};

// c (m x n, ldc = n) = alpha op(a) op(b) + beta c0, with op(a) m x k and op(b) k x n.
struct GemmCase {
  Mnk s;
  bool ta, tb;
  float alpha, beta;
  std::vector<float> a, b, c0;  // c0 is NaN where beta = 0: the product must not read it
  std::int64_t lda, ldb;

  std::string str() const {
    std::ostringstream out;
    out << "m " << s.m << " n " << s.n << " k " << s.k << " ta " << ta << " tb " << tb << " beta " << beta;
    return out.str();
  }
};

// The case `combo` (0..7) of shape s: bit 1 transposes a, bit 2 transposes b, bit 4 makes beta 0.5 (else 0);
// alpha 1.5. Draws a, then b, then (beta 0.5 only) c0 from rng.
inline GemmCase gemm_case(std::mt19937_64& rng, Mnk s, int combo) {
  GemmCase g{s, (combo & 1) != 0, (combo & 2) != 0, 1.5f, (combo & 4) ? 0.5f : 0.0f, {}, {}, {}, 0, 0};
  g.a = random_floats(rng, static_cast<std::size_t>(s.m * s.k));
  g.b = random_floats(rng, static_cast<std::size_t>(s.k * s.n));
  g.c0 = g.beta == 0.0f
             ? std::vector<float>(static_cast<std::size_t>(s.m * s.n), std::numeric_limits<float>::quiet_NaN())
             : random_floats(rng, static_cast<std::size_t>(s.m * s.n));
  g.lda = g.ta ? s.m : s.k;
  g.ldb = g.tb ? s.k : s.n;
  return g;
}

// The largest |c - (alpha op(a) op(b) + beta c0)| over c's elements, each divided by its bound
// alpha (k + roundings) 2^-24 (sum of |terms| + |beta c0|) (6e-8 for 2^-24): a result within f32 rounding
// gives at most 1. The exact product is a double sum of operand(x) operand(y): the operands as the kernel
// multiplies them (bf16-rounded for the bf16 product).
template <class Operand>
double worst_in_bounds(const GemmCase& g, const std::vector<float>& c, double roundings, Operand operand) {
  const Mnk& s = g.s;
  double worst = 0.0;
  for (std::int64_t i = 0; i < s.m; ++i)
    for (std::int64_t j = 0; j < s.n; ++j) {
      double want = 0.0, scale = 0.0;
      for (std::int64_t p = 0; p < s.k; ++p) {
        const double x = operand(g.ta ? g.a[p * g.lda + i] : g.a[i * g.lda + p]);
        const double y = operand(g.tb ? g.b[j * g.ldb + p] : g.b[p * g.ldb + j]);
        want += x * y;
        scale += std::abs(x * y);
      }
      const double c_in = g.beta == 0.0f ? 0.0 : g.beta * g.c0[i * s.n + j];
      const double bound = 1e-30 + g.alpha * (static_cast<double>(s.k) + roundings) * 6e-8 * (scale + std::abs(c_in));
      const double err = std::abs(static_cast<double>(c[i * s.n + j]) - (g.alpha * want + c_in));
      worst = std::max(worst, err / bound);
    }
  return worst;
}

// The largest |x[i] - y[i]|: two kernels' results of the same product.
inline double worst_difference(const std::vector<float>& x, const std::vector<float>& y) {
  double worst = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) worst = std::max(worst, double(std::abs(x[i] - y[i])));
  return worst;
}

}  // namespace troupe::gemm_test
