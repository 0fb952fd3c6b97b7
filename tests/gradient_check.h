// Owns the gradient-check tests' comparisons (every op and layer: tests/test_gradcheck.cpp, tests/test_cnn.cpp):
// check_grad, an analytic gradient against a double-precision finite difference; check_forward, a forward
// against the double-precision reference; check_accumulated, a second backward pass adding to the first.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>

#include "tests/reference_ops.h"

namespace troupe::ref {

// Gradients agree with the finite difference to this relative error.
inline constexpr double kGradTol = 1e-3;
// Forwards agree with the double-precision reference to this relative error.
inline constexpr double kFwdTol = 1e-5;
// A second backward pass gives twice the first's parameter gradients to this relative error.
inline constexpr double kAccumTol = 1e-6;

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

inline void check_forward(const std::string& what, const Tensor& got, const Vec& want, double tol = kFwdTol) {
  const double e = rel_err(to_vec(got), want);
  INFO(what << ": forward relative error " << e);
  CHECK(e <= tol);
}

// `twice`: a parameter's gradient after two backward passes of the same input; `once`: after one.
inline void check_accumulated(const std::string& what, const Tensor& twice, const Vec& once) {
  const double e = rel_err(to_vec(twice), scaled(once, 2.0));
  INFO(what << ": after two backward passes, relative error to 2 x one pass " << e);
  CHECK(max_abs(once) > 0.0);
  CHECK(e <= kAccumTol);
}

}  // namespace troupe::ref
