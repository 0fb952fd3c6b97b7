// roc_auc by sorting with average ranks for ties; log_loss with clamped probabilities.
#include "models/binary_metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe {

namespace {
void check_sizes(std::size_t a, std::size_t b, const char* what) {
  if (a != b) throw Error(ErrorKind::kInput, fmt::format("{}: {} predictions but {} labels", what, a, b));
}
}  // namespace

double roc_auc(std::span<const float> scores, std::span<const float> labels) {
  check_sizes(scores.size(), labels.size(), "roc_auc");
  const std::size_t n = scores.size();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
  double positives = 0, rank_sum = 0;
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j < n && scores[order[j]] == scores[order[i]]) ++j;
    const double rank = 0.5 * static_cast<double>(i + 1 + j);  // average of ranks i+1 .. j
    for (std::size_t k = i; k < j; ++k) {
      const float y = labels[order[k]];
      if (y != 0.0f && y != 1.0f) throw Error(ErrorKind::kInput, fmt::format("roc_auc: label {} is not 0 or 1", y));
      if (y == 1.0f) {
        positives += 1;
        rank_sum += rank;
      }
    }
    i = j;
  }
  const double negatives = static_cast<double>(n) - positives;
  if (positives == 0 || negatives == 0)
    throw Error(ErrorKind::kInput, fmt::format("roc_auc: {} positive and {} negative labels; AUC needs both", positives, negatives));
  return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

double log_loss(std::span<const float> p, std::span<const float> labels) {
  check_sizes(p.size(), labels.size(), "log_loss");
  if (p.empty()) throw Error(ErrorKind::kInput, "log_loss: no predictions");
  double total = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const double q = std::clamp(static_cast<double>(p[i]), 1e-7, 1 - 1e-7);
    total -= labels[i] * std::log(q) + (1 - labels[i]) * std::log(1 - q);
  }
  return total / static_cast<double>(p.size());
}

}  // namespace troupe
