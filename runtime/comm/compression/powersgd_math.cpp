// Owns PowerSGD's dense kernels (plain loops: r is small, so these are memory-bound passes over M).
#include "runtime/comm/compression/powersgd_math.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/error.h"
#include "runtime/splitmix64.h"

namespace troupe::comm {

bool powersgd_compresses(std::size_t rows, std::size_t cols, std::size_t rank) {
  return rows > 1 && cols > 1 && rank >= 1 && rank < rows && rank < cols && (rows + cols) * rank < rows * cols;
}

namespace {

// qt (r × cols) = qᵀ for q cols × r: the kernels below then walk rows of M against contiguous rows of qt.
std::vector<float> transposed(std::span<const float> q, std::size_t cols, std::size_t r) {
  std::vector<float> qt(q.size());
  for (std::size_t j = 0; j < cols; ++j)
    for (std::size_t k = 0; k < r; ++k) qt[k * cols + j] = q[j * r + k];
  return qt;
}

// Σ a[j]·b[j] with 32 independent partial sums (the compiler may then use four SIMD registers without
// reassociating anything, so the additions do not wait on each other), combined in a fixed order:
// the same bits on every run and every rank.
float dot(const float* a, const float* b, std::size_t n) {
  constexpr std::size_t kLanes = 32;
  float acc[kLanes] = {};
  std::size_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (std::size_t l = 0; l < kLanes; ++l) acc[l] += a[j + l] * b[j + l];
  float tail = 0.0f;
  for (; j < n; ++j) tail += a[j] * b[j];
  for (std::size_t width = kLanes / 2; width > 0; width /= 2)  // pairwise: lanes l and l + width
    for (std::size_t l = 0; l < width; ++l) acc[l] += acc[l + width];
  return acc[0] + tail;
}

// y += a·x over n elements.
void axpy(float* __restrict y, float a, const float* __restrict x, std::size_t n) {
  for (std::size_t j = 0; j < n; ++j) y[j] += a * x[j];
}

}  // namespace

void matmul_mq(std::span<const float> m, std::span<const float> q, std::size_t rows, std::size_t cols, std::size_t r,
               std::span<float> p) {
  TROUPE_CHECK(m.size() == rows * cols && q.size() == cols * r && p.size() == rows * r, rows, "x", cols, " r ", r);
  const std::vector<float> qt = transposed(q, cols, r);
  for (std::size_t i = 0; i < rows; ++i)  // row i of M stays in L1 while it meets every column of Q
    for (std::size_t k = 0; k < r; ++k) p[i * r + k] = dot(m.data() + i * cols, qt.data() + k * cols, cols);
}

void matmul_mtp(std::span<const float> m, std::span<const float> p, std::size_t rows, std::size_t cols, std::size_t r,
                std::span<float> q) {
  TROUPE_CHECK(m.size() == rows * cols && p.size() == rows * r && q.size() == cols * r, rows, "x", cols, " r ", r);
  std::vector<float> qt(cols * r, 0.0f);
  for (std::size_t i = 0; i < rows; ++i)  // rows in order: the same sums on every run
    for (std::size_t k = 0; k < r; ++k) axpy(qt.data() + k * cols, p[i * r + k], m.data() + i * cols, cols);
  for (std::size_t j = 0; j < cols; ++j)
    for (std::size_t k = 0; k < r; ++k) q[j * r + k] = qt[k * cols + j];
}

void matmul_pqt(std::span<const float> p, std::span<const float> q, std::size_t rows, std::size_t cols, std::size_t r,
                std::span<float> m) {
  TROUPE_CHECK(m.size() == rows * cols && p.size() == rows * r && q.size() == cols * r, rows, "x", cols, " r ", r);
  const std::vector<float> qt = transposed(q, cols, r);
  for (std::size_t i = 0; i < rows; ++i) {
    float* mi = m.data() + i * cols;
    std::fill(mi, mi + cols, 0.0f);
    for (std::size_t k = 0; k < r; ++k) axpy(mi, p[i * r + k], qt.data() + k * cols, cols);
  }
}

void orthogonalize_columns(std::span<float> p, std::size_t rows, std::size_t r) {
  TROUPE_CHECK(p.size() == rows * r, p.size(), " != ", rows, "x", r);
  auto norm_of = [&](std::size_t c) {
    double n2 = 0.0;
    for (std::size_t i = 0; i < rows; ++i) n2 += static_cast<double>(p[i * r + c]) * p[i * r + c];
    return std::sqrt(n2);
  };
  for (std::size_t c = 0; c < r; ++c) {
    const double before = norm_of(c);
    // Two projection passes ("twice is enough", Giraud et al. 2005): one pass leaves a nearly
    // dependent column with rounding noise that is not orthogonal to the earlier columns.
    for (int pass = 0; pass < 2; ++pass) {
      for (std::size_t prev = 0; prev < c; ++prev) {
        double dot = 0.0;
        for (std::size_t i = 0; i < rows; ++i) dot += static_cast<double>(p[i * r + c]) * p[i * r + prev];
        const float d = static_cast<float>(dot);
        for (std::size_t i = 0; i < rows; ++i) p[i * r + c] -= d * p[i * r + prev];
      }
    }
    const double norm = norm_of(c);
    // A column that lost all but 2^-20 of its norm (or is zero) lay in the span of the earlier ones:
    // what is left is rounding noise, so drop it. A NaN or inf norm falls through and turns the column
    // into NaN, so a broken gradient stays visible.
    const float inv = norm <= 1e-30 || norm <= before * 0x1p-20 ? 0.0f : static_cast<float>(1.0 / norm);
    for (std::size_t i = 0; i < rows; ++i) p[i * r + c] *= inv;
  }
}

void fill_normal(std::span<float> q, std::uint64_t seed) {
  std::uint64_t state = seed;
  auto uniform = [&]() { return (static_cast<double>(splitmix64_next(state) >> 11) + 0.5) / 9007199254740992.0; };  // (0, 1)
  for (std::size_t i = 0; i < q.size(); i += 2) {
    const double u1 = uniform(), u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    q[i] = static_cast<float>(radius * std::cos(6.283185307179586 * u2));
    if (i + 1 < q.size()) q[i + 1] = static_cast<float>(radius * std::sin(6.283185307179586 * u2));
  }
}

}  // namespace troupe::comm
