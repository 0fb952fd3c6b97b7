// Owns the partitioner tests: exact balance against brute force, literal splits, strict boundary parsing, describe().
#include <catch2/catch.hpp>

#include "tests/error_of.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "runtime/error.h"
#include "runtime/plan/partition.h"

using namespace troupe;
using namespace troupe::plan;
using Catch::Matchers::Contains;

namespace {


// Checks the structural contract: p + 1 boundaries from 0 to n, strictly increasing (no empty stage),
// so every layer is in exactly one stage; stage_cost sums each stage's layers.
void check_valid(const Partition& part, const std::vector<double>& costs, int stages) {
  REQUIRE(part.boundaries.size() == static_cast<std::size_t>(stages) + 1);
  REQUIRE(part.stage_cost.size() == static_cast<std::size_t>(stages));
  CHECK(part.boundaries.front() == 0);
  CHECK(part.boundaries.back() == costs.size());
  for (int s = 0; s < stages; ++s) {
    CHECK(part.begin(s) < part.end(s));
    double sum = 0;
    for (std::size_t l = part.begin(s); l < part.end(s); ++l) sum += costs[l];
    CHECK(part.stage_cost[static_cast<std::size_t>(s)] == Approx(sum).margin(1e-12));
  }
}

// The best largest-stage cost over every contiguous split, by enumerating all of them.
double brute_force(const std::vector<double>& costs, int stages) {
  const std::size_t n = costs.size();
  double best = std::numeric_limits<double>::infinity();
  // Choose stages - 1 cut points among 1..n-1 via a bitmask.
  for (unsigned mask = 0; mask < (1u << (n - 1)); ++mask) {
    if (__builtin_popcount(mask) != stages - 1) continue;
    double worst = 0, run = 0;
    for (std::size_t l = 0; l < n; ++l) {
      run += costs[l];
      if (l + 1 == n || (mask >> l & 1u)) {
        worst = std::max(worst, run);
        run = 0;
      }
    }
    best = std::min(best, worst);
  }
  return best;
}

double largest(const Partition& p) { return *std::max_element(p.stage_cost.begin(), p.stage_cost.end()); }

}  // namespace

TEST_CASE("partition_balanced: literal splits", "[partition]") {
  auto bounds = [](const std::vector<double>& costs, int stages) { return partition_balanced(costs, stages).boundaries; };
  using B = std::vector<std::size_t>;
  CHECK(bounds({1, 1, 1, 1, 1, 1}, 3) == B{0, 2, 4, 6});
  CHECK(bounds({1, 2, 3, 4, 5}, 2) == B{0, 3, 5});            // 6 | 9 beats 10 | 5
  CHECK(bounds({10, 1, 1, 1}, 2) == B{0, 1, 4});              // one heavy layer alone
  CHECK(bounds({1, 1, 1, 1, 10}, 3) == B{0, 2, 4, 5});        // heavy last layer alone, the rest split
  CHECK(bounds({1, 1, 1, 1}, 3) == B{0, 1, 2, 4});            // ties: later stages take more
  CHECK(bounds({3, 1, 1, 1, 1, 1, 1}, 3) == B{0, 1, 4, 7});   // 3 | 3 | 3
  CHECK(bounds({0, 0, 0}, 2) == B{0, 1, 3});
  CHECK(bounds({5, 4, 3}, 3) == B{0, 1, 2, 3});               // one layer per stage
  CHECK(bounds({7}, 1) == B{0, 1});
  const Partition p = partition_balanced({1, 2, 3, 4, 5}, 2);
  CHECK(p.stage_cost == std::vector<double>{6, 9});
  CHECK(p.stages() == 2);
}

TEST_CASE("partition_balanced: optimal against brute force (and so is every prefix), never drops or duplicates a layer", "[partition]") {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<double> cost(0.0, 10.0);
  std::uniform_int_distribution<int> small(0, 4);
  for (int trial = 0; trial < 400; ++trial) {
    const std::size_t n = 1 + trial % 10;
    std::vector<double> costs(n);
    // Half the trials use small integers, which produce many ties.
    for (double& c : costs) c = trial % 2 ? cost(rng) : double(small(rng));
    for (int stages = 1; stages <= static_cast<int>(n); ++stages) {
      INFO("trial " << trial << " n " << n << " stages " << stages);
      const Partition part = partition_balanced(costs, stages);
      check_valid(part, costs, stages);
      CHECK(largest(part) == Approx(brute_force(costs, stages)).epsilon(1e-12).margin(1e-12));
      // The tie-break: the stages before the last are an optimal split of their own layers.
      if (stages > 1) {
        const std::vector<double> prefix(costs.begin(), costs.begin() + static_cast<long>(part.begin(stages - 1)));
        const double prefix_largest = *std::max_element(part.stage_cost.begin(), part.stage_cost.end() - 1);
        CHECK(prefix_largest == Approx(brute_force(prefix, stages - 1)).epsilon(1e-12).margin(1e-12));
      }
    }
  }
}

TEST_CASE("partition_balanced: errors", "[partition]") {
  CHECK_THAT(config_error([] { partition_balanced({1, 2, 3}, 4); }),
             Contains("cannot split 3 layer(s) into 4 pipeline stages") && Contains("use at most 3"));
  CHECK_THAT(config_error([] { partition_balanced({}, 1); }), Contains("cannot split 0 layer(s)"));
  CHECK_THAT(config_error([] { partition_balanced({1, 2}, 0); }), Contains("stages must be >= 1, got 0"));
  CHECK_THAT(config_error([] { partition_balanced({1, -2}, 1); }), Contains("layer 1 has cost -2"));
  CHECK_THAT(config_error([] { partition_balanced({std::nan(""), 2}, 1); }), Contains("layer 0 has cost"));
}

TEST_CASE("partition_from_boundaries: valid text", "[partition]") {
  Partition p = partition_from_boundaries("0,3,6", 8, 3);
  CHECK(p.boundaries == std::vector<std::size_t>{0, 3, 6, 8});
  CHECK(p.stage_cost == std::vector<double>{3, 3, 2});  // no costs: one per layer
  p = partition_from_boundaries(" 0 , 1,\t2 ", 4, 3, {1, 2, 3, 4});
  CHECK(p.boundaries == std::vector<std::size_t>{0, 1, 2, 4});
  CHECK(p.stage_cost == std::vector<double>{1, 2, 7});
  CHECK(partition_from_boundaries("0", 5, 1).boundaries == std::vector<std::size_t>{0, 5});
}

TEST_CASE("partition_from_boundaries: each rule has a precise error naming parallel.boundaries", "[partition]") {
  struct Bad {
    std::string text;
    std::size_t layers;
    int stages;
    std::string expect;
  };
  const std::vector<Bad> cases = {
      {"1,3,6", 8, 3, "entry 1 is 1 but must be 0"},
      {"0,3,3", 8, 3, "entry 3 (3) is not greater than entry 2 (3): boundaries must strictly increase"},
      {"0,5,3", 8, 3, "entry 3 (3) is not greater than entry 2 (5)"},
      {"0,3,8", 8, 3, "entry 3 (8) must be below the number of layers (8)"},
      {"0,3", 8, 3, "gives 2 stage start(s) but the pipeline has 3 stage(s)"},
      {"0,3,5,6", 8, 3, "gives 4 stage start(s) but the pipeline has 3 stage(s)"},
      {"0,,3", 8, 3, "entry 2 is empty"},
      {"", 8, 1, "entry 1 is empty"},
      {"0,3,", 8, 3, "entry 3 is empty"},
      {"0,a,3", 8, 3, "entry 2 (\"a\") is not a non-negative decimal integer"},
      {"0,-3,6", 8, 3, "entry 2 (\"-3\") is not a non-negative decimal integer"},
      {"0,+3,6", 8, 3, "entry 2 (\"+3\") is not a non-negative decimal integer"},
      {"0,3 6", 8, 2, "entry 2 (\"3 6\") is not a non-negative decimal integer"},
      {"0,99999999999999999999999", 8, 2, "is not a non-negative decimal integer"},
  };
  for (const Bad& b : cases) {
    INFO(b.text);
    const std::string msg = config_error([&] { partition_from_boundaries(b.text, b.layers, b.stages); });
    CHECK_THAT(msg, Contains("parallel.boundaries = \"" + b.text + "\"") && Contains(b.expect) &&
                        Contains("e.g. \"0,3,6\""));
  }
  CHECK_THAT(config_error([] { partition_from_boundaries("0,1,2", 2, 3); }),
             Contains("cannot split 2 layer(s) into 3 pipeline stages"));
  CHECK_THAT(config_error([] { partition_from_boundaries("0,1", 3, 2, {1, 2}); }),
             Contains("2 layer cost(s) given for 3 layer(s)"));
}

TEST_CASE("describe: ranges, names and cost shares", "[partition]") {
  const std::vector<std::string> names = {"wte", "wpe", "h.0", "h.1", "h.2", "h.3", "h.4", "ln_f"};
  const std::vector<double> costs = {2, 1, 4, 4, 4, 4, 4, 1};
  const Partition p = partition_from_boundaries("0,3,7", names.size(), 3, costs);
  CHECK(describe(p, names) ==
        "stage 0: layers 0-2 (3): wte, wpe, h.0       cost 7 (29.2%)\n"
        "stage 1: layers 3-6 (4): h.1, h.2, h.3, h.4  cost 16 (66.7%)\n"
        "stage 2: layer 7 (1): ln_f                   cost 1 (4.2%)\n"
        "largest stage 66.7% of the cost (a perfect split: 33.3%)\n");
  // Long ranges name the first two layers and the last.
  const Partition two = partition_from_boundaries("0,1", names.size(), 2, costs);
  CHECK_THAT(describe(two, names), Contains("stage 1: layers 1-7 (7): wpe, h.0, ..., ln_f"));
  // Without names; costs override the partition's own.
  CHECK(describe(partition_from_boundaries("0,2", 4, 2), {}, {1, 1, 1, 5}) ==
        "stage 0: layers 0-1 (2)  cost 2 (25.0%)\n"
        "stage 1: layers 2-3 (2)  cost 6 (75.0%)\n"
        "largest stage 75.0% of the cost (a perfect split: 50.0%)\n");
  CHECK_THAT(config_error([&] { describe(p, {"a"}); }), Contains("1 layer name(s) for 8 layer(s)"));
}
