// Owns check_grad: an analytic gradient against a double-precision finite difference, shared by the
// gradient-check tests (every op and layer: tests/test_gradcheck.cpp, tests/test_cnn.cpp).
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>

#include "tests/reference_ops.h"

namespace troupe::ref {

// Gradients agree with the finite difference to this relative error.
inline constexpr double kGradTol = 1e-3;

inline double max_abs(const Vec& v) {
  double m = 0.0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// Analytic gradient vs numeric; the numeric one must be non-trivial, or the check would prove nothing.
inline void check_grad(const std::string& what, const Tensor& analytic, const Vec& numeric) {
  const double e = rel_err(to_vec(analytic), numeric);
  INFO(what << ": gradient relative error " << e << " (max |numeric| " << max_abs(numeric) << ")");
  CHECK(max_abs(numeric) > 1e-3);
  CHECK(e <= kGradTol);
}

}  // namespace troupe::ref
