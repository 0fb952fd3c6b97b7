// Owns top-k selection (a total order on |value|, ties to the lower index) and the error-feedback step.
#include "runtime/comm/compression/topk_codec.h"

#include <algorithm>
#include <functional>
#include <cmath>
#include <limits>
#include <numeric>

#include "runtime/error.h"

namespace troupe::comm {

std::size_t topk_count(std::size_t n, double fraction) {
  TROUPE_CHECK(fraction > 0.0 && fraction <= 1.0, "fraction ", fraction);
  if (n == 0) return 0;
  // The small slack keeps e.g. 0.01 · 300 (= 3.0000000000000004) from becoming 4.
  const double k = std::ceil(fraction * static_cast<double>(n) - 1e-9);
  return std::clamp<std::size_t>(static_cast<std::size_t>(std::max(k, 1.0)), 1, n);
}

void select_topk(std::span<const float> acc, std::size_t k, std::vector<std::uint32_t>& scratch,
                 std::vector<std::uint32_t>& out) {
  TROUPE_CHECK(k <= acc.size(), "k ", k, " of ", acc.size());
  TROUPE_CHECK(acc.size() <= std::numeric_limits<std::uint32_t>::max(), acc.size(), " values");
  out.clear();
  if (k == 0) return;
  if (k == acc.size()) {
    out.resize(k);
    std::iota(out.begin(), out.end(), 0u);
    return;
  }
  auto magnitude = [&](std::size_t i) {
    const float a = std::fabs(acc[i]);
    return std::isnan(a) ? std::numeric_limits<float>::infinity() : a;
  };
  // Strict total order: larger magnitude first, then lower index (NaN as +inf, then by index).
  auto before = [&](std::uint32_t a, std::uint32_t b) {
    const float ma = magnitude(a), mb = magnitude(b);
    return ma != mb ? ma > mb : a < b;
  };
  scratch.clear();
  const std::size_t n = acc.size();
  if (n >= kTopKSampledFrom && k <= n / 8) {
    // Candidates first: a threshold t from an evenly spaced sample, chosen so that about 2k entries
    // pass. When at least k pass, the k-th largest magnitude is >= t, so every member of the exact
    // top k (ties included) is a candidate and nth_element over the candidates gives the same set as
    // over everything, several times faster. Otherwise fall back to all entries.
    constexpr std::size_t kSamples = 4096;
    std::vector<float> sample(kSamples);
    for (std::size_t s = 0; s < kSamples; ++s) sample[s] = magnitude(s * (n / kSamples));
    const auto rank = std::min(kSamples - 1, static_cast<std::size_t>(2.0 * static_cast<double>(k) / n * kSamples));
    std::nth_element(sample.begin(), sample.begin() + static_cast<std::ptrdiff_t>(rank), sample.end(), std::greater<>());
    const float threshold = sample[rank];
    for (std::size_t i = 0; i < n; ++i)
      if (magnitude(i) >= threshold) scratch.push_back(static_cast<std::uint32_t>(i));
    if (scratch.size() < k) scratch.clear();
  }
  if (scratch.empty()) {
    scratch.resize(n);
    std::iota(scratch.begin(), scratch.end(), 0u);
  }
  std::nth_element(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(k - 1), scratch.end(), before);
  out.assign(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(k));
  std::sort(out.begin(), out.end());
}

void topk_with_feedback(std::span<const float> grad, std::span<float> residual, std::size_t k,
                        std::vector<std::uint32_t>& scratch, SparseGrad& out) {
  TROUPE_CHECK(grad.size() == residual.size(), grad.size(), " != ", residual.size());
  for (std::size_t i = 0; i < grad.size(); ++i) residual[i] += grad[i];
  select_topk(residual, k, scratch, out.indices);
  out.values.resize(out.indices.size());
  for (std::size_t j = 0; j < out.indices.size(); ++j) {
    out.values[j] = residual[out.indices[j]];
    residual[out.indices[j]] = 0.0f;
  }
  // inf/NaN beyond the k sent (which already make this step's result non-finite) are dropped rather
  // than carried into every later step.
  for (float& r : residual)
    if (!std::isfinite(r)) r = 0.0f;
}

}  // namespace troupe::comm
