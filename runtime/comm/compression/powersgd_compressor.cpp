// Owns PowerSgdCompressor: the per-bucket plan (which parameters are matrices worth compressing) and the two-allreduce step.
#include "runtime/comm/compression/powersgd_compressor.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "runtime/comm/compression/powersgd_math.h"
#include "runtime/error.h"

namespace troupe::comm {

namespace {

// Q's first values for the matrix at `offset`: the same on every rank.
std::uint64_t initial_seed(std::size_t offset) { return 0x5057'5347'0000'0000ull ^ offset; }  // "PWSG"

}  // namespace

PowerSgdCompressor::PowerSgdCompressor(std::size_t rank, std::string name) : rank_(rank), name_(std::move(name)) {
  TROUPE_CHECK(rank >= 1, "rank ", rank);
}

void PowerSgdCompressor::plan(std::size_t n, std::span<const BucketParam> layout) {
  layout_.assign(layout.begin(), layout.end());
  residual_.assign(n, 0.0f);
  std::size_t covered = 0;  // end of the last parameter: gaps before the next are summed exactly
  auto exact = [&](std::size_t from, std::size_t to) {
    if (to > from) exact_.push_back(Range{from, to - from});
  };
  for (const BucketParam& p : layout) {
    exact(covered, p.offset);
    if (powersgd_compresses(p.rows, p.cols, rank_)) {
      Matrix m{p.offset, p.rows, p.cols, std::vector<float>(p.cols * rank_)};
      fill_normal(m.q, initial_seed(p.offset));
      matrices_.push_back(std::move(m));
    } else {
      exact(p.offset, p.offset + p.rows * p.cols);
    }
    covered = p.offset + p.rows * p.cols;
  }
  exact(covered, n);
  planned_ = true;
}

CompressStats PowerSgdCompressor::allreduce(Transport& transport, std::span<float> grad,
                                            std::span<const BucketParam> layout) {
  validate_layout(layout, grad.size(), name_);
  if (!planned_) {
    plan(grad.size(), layout);
  } else {
    const bool same = residual_.size() == grad.size() && layout.size() == layout_.size() &&
                      std::equal(layout.begin(), layout.end(), layout_.begin(), [](const BucketParam& a, const BucketParam& b) {
                        return a.offset == b.offset && a.rows == b.rows && a.cols == b.cols;
                      });
    if (!same)
      throw Error(ErrorKind::kShape,
                  fmt::format("compressor {} holds the state of a bucket of {} floats in {} parameters but was called "
                              "with {} floats in {} parameters: make one compressor per bucket",
                              name_, residual_.size(), layout_.size(), grad.size(), layout.size()));
  }
  CompressStats stats;
  if (grad.empty()) return stats;
  const int n = transport.size();
  const std::size_t r = rank_;
  stats.bytes_uncompressed = ring_allreduce_bytes(grad.size(), n, transport.rank());

  // M = grad + residual, in place; P = M Q into the first message, then the exact elements.
  std::size_t first_size = 0, second_size = 0;
  for (const Matrix& m : matrices_) {
    first_size += m.rows * r;
    second_size += m.cols * r;
  }
  for (const Range& e : exact_) first_size += e.length;
  first_.resize(first_size);
  second_.resize(second_size);
  std::size_t at = 0;
  for (const Matrix& m : matrices_) {
    std::span<float> mat = grad.subspan(m.offset, m.rows * m.cols);
    for (std::size_t i = 0; i < mat.size(); ++i) mat[i] += residual_[m.offset + i];
    matmul_mq(mat, m.q, m.rows, m.cols, r, std::span<float>(first_).subspan(at, m.rows * r));
    at += m.rows * r;
  }
  for (const Range& e : exact_) {
    std::memcpy(first_.data() + at, grad.data() + e.offset, 4 * e.length);
    at += e.length;
  }
  stats.bytes_sent += compressed_allreduce_ring(transport, first_, *f32_, scratch_);

  // Exact sums go straight back; each P is orthogonalized, then Q' = Mᵀ P̂.
  at = 0;
  std::size_t qat = 0;
  for (const Matrix& m : matrices_) {
    std::span<float> p = std::span<float>(first_).subspan(at, m.rows * r);
    orthogonalize_columns(p, m.rows, r);
    matmul_mtp(grad.subspan(m.offset, m.rows * m.cols), p, m.rows, m.cols, r,
               std::span<float>(second_).subspan(qat, m.cols * r));
    at += m.rows * r;
    qat += m.cols * r;
  }
  for (const Range& e : exact_) {
    std::memcpy(grad.data() + e.offset, first_.data() + at, 4 * e.length);
    at += e.length;
  }
  if (!matrices_.empty()) stats.bytes_sent += compressed_allreduce_ring(transport, second_, *f32_, scratch_);

  // approx = P̂ Q'ᵀ; residual = M − approx/n; warm start Q = Q'.
  at = 0;
  qat = 0;
  const float share = 1.0f / static_cast<float>(n);
  for (Matrix& m : matrices_) {
    const std::span<const float> p = std::span<const float>(first_).subspan(at, m.rows * r);
    const std::span<const float> q = std::span<const float>(second_).subspan(qat, m.cols * r);
    std::span<float> mat = grad.subspan(m.offset, m.rows * m.cols);
    std::span<float> res = std::span<float>(residual_).subspan(m.offset, m.rows * m.cols);
    std::copy(mat.begin(), mat.end(), res.begin());  // M
    matmul_pqt(p, q, m.rows, m.cols, r, mat);         // approx
    for (std::size_t i = 0; i < mat.size(); ++i) {
      const float owed = res[i] - mat[i] * share;
      res[i] = std::isfinite(owed) ? owed : 0.0f;  // an inf/NaN gradient shows in this step, not forever
    }
    // Warm start, unless this step was non-finite (Q' is the same on every rank, so all ranks agree):
    // a NaN Q would poison every later step, so start again from the initial Q.
    if (std::all_of(q.begin(), q.end(), [](float v) { return std::isfinite(v); }))
      std::copy(q.begin(), q.end(), m.q.begin());
    else
      fill_normal(m.q, initial_seed(m.offset));
    at += m.rows * r;
    qat += m.cols * r;
  }
  return stats;
}

}  // namespace troupe::comm
