// Owns the comparison the matrix-product benchmarks print: every GPT product timed under a baseline and a
// contender, alternately, one row each with both GFLOP/s and their ratio, then the whole step by time.
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>

#include "bench/gpt_products.h"

namespace troupe::bench {

// The best seconds of `baseline` and of `contender`, each best_seconds(reps) over two rounds that
// alternate between them, so that load from the rest of the machine falls on both.
template <class Baseline, class Contender>
std::pair<double, double> time_alternately(int reps, Baseline baseline, Contender contender) {
  double baseline_s = 1e30, contender_s = 1e30;
  for (int round = 0; round < 2; ++round) {
    baseline_s = std::min(baseline_s, best_seconds(reps, baseline));
    contender_s = std::min(contender_s, best_seconds(reps, contender));
  }
  return {baseline_s, contender_s};
}

// The table: the header when made, a row per product, the total by time at the end. The ratio is
// baseline time over contender time: above 1, the contender is faster.
class ProductComparison {
 public:
  ProductComparison(const std::string& baseline, const std::string& contender) {
    std::printf("%-20s %6s %6s %6s %12s %12s %7s\n", "product", "m", "n", "k", (baseline + " GF/s").c_str(),
                (contender + " GF/s").c_str(), "ratio");
  }

  void row(const Product& p, std::pair<double, double> seconds) {
    const auto [baseline_s, contender_s] = seconds;
    const double flops = 2.0 * p.m * p.n * p.k;
    flops_ += flops;
    baseline_s_ += baseline_s;
    contender_s_ += contender_s;
    std::printf("%-20s %6lld %6lld %6lld %12.1f %12.1f %6.2fx\n", p.name.c_str(), static_cast<long long>(p.m),
                static_cast<long long>(p.n), static_cast<long long>(p.k), flops / baseline_s / 1e9,
                flops / contender_s / 1e9, baseline_s / contender_s);
  }

  void total(int threads, const ProductFlags& flags) const {
    std::printf("%-20s %6s %6s %6s %12.1f %12.1f %6.2fx   (threads %d, width %lld, rows %lld)\n", "all, by time",
                "", "", "", flops_ / baseline_s_ / 1e9, flops_ / contender_s_ / 1e9, baseline_s_ / contender_s_, threads,
                static_cast<long long>(flags.width), static_cast<long long>(flags.rows));
  }

 private:
  double flops_ = 0, baseline_s_ = 0, contender_s_ = 0;
};

}  // namespace troupe::bench
