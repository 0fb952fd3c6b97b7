// Owns layer-to-stage partitioning: the exact min-max dynamic program, strict parsing of user boundaries, and describe().
#include "runtime/plan/partition.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

#include "runtime/error.h"

namespace troupe::plan {

namespace {

void check_costs(const std::vector<double>& costs) {
  for (std::size_t i = 0; i < costs.size(); ++i)
    if (!std::isfinite(costs[i]) || costs[i] < 0)
      throw Error(ErrorKind::kConfig, "layer " + std::to_string(i) + " has cost " + std::to_string(costs[i]) +
                                          ": layer costs must be finite and >= 0");
}

void check_fits(std::size_t layers, int stages) {
  if (stages < 1) throw Error(ErrorKind::kConfig, "pipeline stages must be >= 1, got " + std::to_string(stages));
  if (static_cast<std::size_t>(stages) > layers)
    throw Error(ErrorKind::kConfig, "cannot split " + std::to_string(layers) + " layer(s) into " +
                                        std::to_string(stages) +
                                        " pipeline stages: every stage needs at least one layer; use at most " +
                                        std::to_string(layers) + " stage(s)");
}

// Fills stage_cost from the boundaries, summing each stage's layers in order.
Partition with_costs(std::vector<std::size_t> boundaries, const std::vector<double>& costs) {
  Partition out;
  out.boundaries = std::move(boundaries);
  for (std::size_t s = 0; s + 1 < out.boundaries.size(); ++s) {
    double sum = 0;
    for (std::size_t l = out.boundaries[s]; l < out.boundaries[s + 1]; ++l) sum += costs.empty() ? 1.0 : costs[l];
    out.stage_cost.push_back(sum);
  }
  return out;
}

std::string format_cost(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4g", x);
  return buf;
}

std::string format_share(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * x);
  return buf;
}

}  // namespace

Partition partition_balanced(const std::vector<double>& layer_costs, int stages) {
  check_fits(layer_costs.size(), stages);
  check_costs(layer_costs);
  const std::size_t n = layer_costs.size(), p = static_cast<std::size_t>(stages);
  std::vector<double> prefix(n + 1, 0.0);
  for (std::size_t i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + layer_costs[i];
  auto range = [&](std::size_t j, std::size_t i) { return prefix[i] - prefix[j]; };

  // best[k][i]: the smallest possible largest stage cost putting layers [0, i) on k stages (k <= i).
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(p + 1, std::vector<double>(n + 1, inf));
  for (std::size_t i = 1; i <= n; ++i) best[1][i] = range(0, i);
  for (std::size_t k = 2; k <= p; ++k)
    for (std::size_t i = k; i <= n; ++i)
      for (std::size_t j = k - 1; j < i; ++j) best[k][i] = std::min(best[k][i], std::max(best[k - 1][j], range(j, i)));

  // Rebuild from the back: the last of k stages starts as early as the optimum of those k stages
  // allows, and the k - 1 before it are then split optimally among themselves (so a heavy last layer
  // does not leave the rest unbalanced). best[k-1][j] grows with j, so the earliest start also gives
  // the lightest prefix. The same expressions as above are compared: the argmin always qualifies.
  std::vector<std::size_t> boundaries(p + 1, 0);
  boundaries[p] = n;
  std::size_t i = n;
  for (std::size_t k = p; k >= 2; --k) {
    const double target = best[k][i];
    std::size_t j = k - 1;
    while (j < i && std::max(best[k - 1][j], range(j, i)) > target) ++j;
    TROUPE_CHECK(j < i, "no feasible split rebuilding stage ", k - 1);
    boundaries[k - 1] = j;
    i = j;
  }
  return with_costs(std::move(boundaries), layer_costs);
}

Partition partition_from_boundaries(std::string_view text, std::size_t num_layers, int stages,
                                    const std::vector<double>& costs) {
  check_fits(num_layers, stages);
  if (!costs.empty() && costs.size() != num_layers)
    throw Error(ErrorKind::kConfig, "partition: " + std::to_string(costs.size()) + " layer cost(s) given for " +
                                        std::to_string(num_layers) + " layer(s)");
  check_costs(costs);
  const std::string given = "parallel.boundaries = \"" + std::string(text) + "\": ";
  const std::string help = "; write each stage's first layer, comma-separated, starting at 0 (e.g. \"0,3,6\")";

  std::vector<std::size_t> starts;
  std::size_t pos = 0;
  for (;;) {
    std::size_t comma = text.find(',', pos);
    std::string_view entry = text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    while (!entry.empty() && (entry.front() == ' ' || entry.front() == '\t')) entry.remove_prefix(1);
    while (!entry.empty() && (entry.back() == ' ' || entry.back() == '\t')) entry.remove_suffix(1);
    const std::string which = "entry " + std::to_string(starts.size() + 1);
    if (entry.empty()) throw Error(ErrorKind::kConfig, given + which + " is empty" + help);
    std::size_t value = 0;
    auto [ptr, ec] = std::from_chars(entry.data(), entry.data() + entry.size(), value);
    const bool digits_only = std::all_of(entry.begin(), entry.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits_only || ec != std::errc() || ptr != entry.data() + entry.size())
      throw Error(ErrorKind::kConfig, given + which + " (\"" + std::string(entry) +
                                          "\") is not a non-negative decimal integer" + help);
    starts.push_back(value);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  if (starts.size() != static_cast<std::size_t>(stages))
    throw Error(ErrorKind::kConfig, given + "gives " + std::to_string(starts.size()) + " stage start(s) but the pipeline has " +
                                        std::to_string(stages) + " stage(s); list exactly one first layer per stage" +
                                        help);
  if (starts[0] != 0)
    throw Error(ErrorKind::kConfig,
                given + "entry 1 is " + std::to_string(starts[0]) + " but must be 0: stage 0 owns the first layer" + help);
  for (std::size_t s = 1; s < starts.size(); ++s)
    if (starts[s] <= starts[s - 1])
      throw Error(ErrorKind::kConfig, given + "entry " + std::to_string(s + 1) + " (" + std::to_string(starts[s]) +
                                          ") is not greater than entry " + std::to_string(s) + " (" +
                                          std::to_string(starts[s - 1]) +
                                          "): boundaries must strictly increase so that no stage is empty" + help);
  if (starts.back() >= num_layers)
    throw Error(ErrorKind::kConfig, given + "entry " + std::to_string(starts.size()) + " (" +
                                        std::to_string(starts.back()) + ") must be below the number of layers (" +
                                        std::to_string(num_layers) + ") so that the last stage owns a layer" + help);
  starts.push_back(num_layers);
  return with_costs(std::move(starts), costs);
}

std::string describe(const Partition& partition, const std::vector<std::string>& names,
                     const std::vector<double>& costs) {
  const int p = partition.stages();
  const std::size_t n = partition.boundaries.empty() ? 0 : partition.boundaries.back();
  if (!names.empty() && names.size() != n)
    throw Error(ErrorKind::kConfig, "describe: " + std::to_string(names.size()) + " layer name(s) for " +
                                        std::to_string(n) + " layer(s)");
  if (!costs.empty() && costs.size() != n)
    throw Error(ErrorKind::kConfig, "describe: " + std::to_string(costs.size()) + " layer cost(s) for " +
                                        std::to_string(n) + " layer(s)");
  std::vector<double> stage_cost = costs.empty() ? partition.stage_cost : with_costs(partition.boundaries, costs).stage_cost;
  double total = 0, largest = 0;
  for (double c : stage_cost) {
    total += c;
    largest = std::max(largest, c);
  }
  std::vector<std::string> heads;
  std::size_t width = 0;
  for (int s = 0; s < p; ++s) {
    const std::size_t b = partition.begin(s), e = partition.end(s), count = e - b;
    std::string head = "stage " + std::to_string(s) + ": ";
    if (count == 1) {
      head += "layer ";
      head += std::to_string(b);
    } else {
      head += "layers ";
      head += std::to_string(b);
      head += '-';
      head += std::to_string(e - 1);
    }
    head += " (" + std::to_string(count) + ")";
    if (!names.empty()) {
      head += ": ";
      // Long ranges name their first two and last layers.
      for (std::size_t l = b; l < e; ++l) {
        if (count > 4 && l == b + 2) {
          head += "..., ";
          l = e - 1;
        }
        head += names[l];
        if (l + 1 < e) head += ", ";
      }
    }
    width = std::max(width, head.size());
    heads.push_back(std::move(head));
  }
  std::string out;
  for (int s = 0; s < p; ++s) {
    const double c = stage_cost[static_cast<std::size_t>(s)];
    out += heads[static_cast<std::size_t>(s)] + std::string(width - heads[static_cast<std::size_t>(s)].size() + 2, ' ') +
           "cost " + format_cost(c) + " (" + format_share(total > 0 ? c / total : 0.0) + ")\n";
  }
  if (total > 0)
    out += "largest stage " + format_share(largest / total) + " of the cost (a perfect split: " +
           format_share(1.0 / p) + ")\n";
  return out;
}

}  // namespace troupe::plan
