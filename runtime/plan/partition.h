// Owns the split of a model's layers into contiguous pipeline stages: balanced (exact min-max), user-given boundaries, and a description.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::plan {

// A contiguous split of layers 0..n-1 over p stages. boundaries has p + 1 entries,
// 0 = b[0] < b[1] < ... < b[p] = n: stage s owns layers [b[s], b[s+1]), never empty.
// stage_cost[s] is the sum of its layers' costs (summed in layer order).
struct Partition {
  std::vector<std::size_t> boundaries;
  std::vector<double> stage_cost;

  int stages() const { return static_cast<int>(stage_cost.size()); }
  std::size_t begin(int stage) const { return boundaries[static_cast<std::size_t>(stage)]; }
  std::size_t end(int stage) const { return boundaries[static_cast<std::size_t>(stage) + 1]; }
};

// The split of `layer_costs` (each finite and >= 0) into `stages` non-empty contiguous stages that
// minimises the largest stage cost, exactly (dynamic programming over prefix sums, O(n^2 p)).
// Ties are broken the same way at every level: the first p - 1 stages form an optimal split of their
// own layers, and the last stage takes as many layers as that allows. So later stages get the extra
// layers ({1,1,1,1} on 3 stages: [0,1) [1,2) [2,4)) — in 1F1B the first stage holds the most
// micro-batches' activations, so it is the one to keep light — and one heavy layer does not leave the
// others unbalanced ({1,1,1,1,10} on 3 stages: [0,2) [2,4) [4,5)).
// Throws troupe::Error(ErrorKind::kConfig) when stages < 1, when there are fewer layers than stages
// (every stage needs a layer), or for a negative or non-finite cost.
Partition partition_balanced(const std::vector<double>& layer_costs, int stages);

// The split written in `text` as each stage's first layer, comma-separated ("0,3,6": three stages
// owning [0,3), [3,6), [6,n)); spaces around numbers are allowed. Validated strictly: decimal
// integers, exactly `stages` of them, the first 0, strictly increasing, the last < num_layers.
// `costs` gives each layer's cost (size num_layers), or is empty for a cost of 1 per layer.
// Every violation is troupe::Error(ErrorKind::kConfig) naming parallel.boundaries, the value given
// and the rule broken; more stages than layers, and a costs size mismatch, likewise.
Partition partition_from_boundaries(std::string_view text, std::size_t num_layers, int stages,
                                    const std::vector<double>& costs = {});

// One line per stage: its layer range, the layers' names and its cost with its share of the total,
// then the largest share against a perfect 1/p split. `names` (one per layer) may be empty; `costs`
// may be empty to use partition.stage_cost as given. Example:
//   stage 0: layers 0-2 (3): wte, wpe, h.0       cost 7 (29.2%)
//   stage 1: layers 3-6 (4): h.1, h.2, h.3, h.4  cost 16 (66.7%)
//   stage 2: layer 7 (1): ln_f                   cost 1 (4.2%)
//   largest stage 66.7% of the cost (a perfect split: 33.3%)
// Ranges of more than four layers name the first two and the last. Throws troupe::Error(kConfig) when
// names or costs are given with the wrong count.
std::string describe(const Partition& partition, const std::vector<std::string>& names = {},
                     const std::vector<double>& costs = {});

}  // namespace troupe::plan
