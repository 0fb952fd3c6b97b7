// Owns the schedule generators (layer-parallel, GPipe, 1F1B, interleaved 1F1B) and make_schedule.
#include "runtime/schedule/generators.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "runtime/error.h"

namespace troupe::pipeline {

namespace {

void require_shape(int p, int m, int v) {
  if (p < 1) throw Error(ErrorKind::kConfig, "pipeline stages must be >= 1, got " + std::to_string(p));
  if (m < 1) throw Error(ErrorKind::kConfig, "pipeline micro-batches must be >= 1, got " + std::to_string(m));
  if (v < 1)
    throw Error(ErrorKind::kConfig, "pipeline virtual stages (chunks per stage) must be >= 1, got " + std::to_string(v));
}

void require_stage(int p, int stage) {
  if (stage < 0 || stage >= p)
    throw Error(ErrorKind::kConfig,
                "pipeline stage " + std::to_string(stage) + " out of range: stages are 0.." + std::to_string(p - 1));
}

template <class StageFn>
Schedule per_stage(int p, StageFn&& fn) {
  Schedule schedule;
  schedule.reserve(static_cast<std::size_t>(p));
  for (int s = 0; s < p; ++s) schedule.push_back(fn(s));
  return schedule;
}

// Micro-batch group sizes for the interleaved schedule: q = max(1, floor(m / p)) groups, as even as
// possible, larger ones first. With m % p == 0 that is Megatron's default (groups of p); otherwise every
// group still holds at least p micro-batches (Megatron's rule: a group smaller than p makes chunk c + 1
// wait on a pipeline round trip that has not finished, which in a blocking pipeline deadlocks), and the
// largest group, which sets the warm-up, is as small as it can be. With m < p there is one group of m.
std::vector<int> group_sizes(int p, int m) {
  const int q = std::max(1, m / p);
  std::vector<int> sizes;
  for (int i = 0; i < q; ++i) sizes.push_back(m / q + (i < m % q ? 1 : 0));
  return sizes;
}

// Megatron's schedule table: within each group, every micro-batch on chunk 0, then every one on chunk 1,
// and so on. Entry k is the (micro-batch, chunk) of a stage's k-th forward.
std::vector<std::pair<int, int>> schedule_table(const std::vector<int>& groups, int v) {
  std::vector<std::pair<int, int>> table;
  int first = 0;
  for (int size : groups) {
    for (int c = 0; c < v; ++c)
      for (int mb = first; mb < first + size; ++mb) table.emplace_back(mb, c);
    first += size;
  }
  return table;
}

}  // namespace

Schedule make_layer_parallel(int p) {
  require_shape(p, 1, 1);
  return per_stage(p, [](int) { return Program{Forward{0, 0}, Backward{0, 0}, OptimizerStep{}}; });
}

Program make_gpipe_stage(int p, int m, int stage) {
  require_shape(p, m, 1);
  require_stage(p, stage);
  Program program;
  for (int mb = 0; mb < m; ++mb) program.push_back(Forward{mb, 0});
  for (int mb = 0; mb < m; ++mb) program.push_back(Backward{mb, 0});
  program.push_back(OptimizerStep{});
  return program;
}

Schedule make_gpipe(int p, int m) {
  require_shape(p, m, 1);
  return per_stage(p, [&](int s) { return make_gpipe_stage(p, m, s); });
}

Program make_1f1b_stage(int p, int m, int stage) {
  require_shape(p, m, 1);
  require_stage(p, stage);
  const int warmup = std::min(p - stage - 1, m);
  Program program;
  int next_f = 0, next_b = 0;
  for (int i = 0; i < warmup; ++i) program.push_back(Forward{next_f++, 0});
  for (int i = 0; i < m - warmup; ++i) {
    program.push_back(Forward{next_f++, 0});
    program.push_back(Backward{next_b++, 0});
  }
  while (next_b < m) program.push_back(Backward{next_b++, 0});
  program.push_back(OptimizerStep{});
  return program;
}

Schedule make_1f1b(int p, int m) {
  require_shape(p, m, 1);
  return per_stage(p, [&](int s) { return make_1f1b_stage(p, m, s); });
}

Program make_interleaved_1f1b_stage(int p, int m, int v, int stage) {
  require_shape(p, m, v);
  require_stage(p, stage);
  if (v == 1) return make_1f1b_stage(p, m, stage);
  const std::vector<int> groups = group_sizes(p, m);
  const auto table = schedule_table(groups, v);
  const int total = m * v;
  // Megatron's warm-up: the round trip of the first micro-batch from this stage to the last and back
  // (2 (p - s - 1) forwards), plus chunks 0 .. v-2 of a whole group, so that the first backward (the
  // last chunk of micro-batch 0) has its own forward done. The largest group decides.
  const int warmup = std::min(total, 2 * (p - stage - 1) + (v - 1) * groups.front());
  auto forward = [&](int k) { return Forward{table[k].first, table[k].second}; };
  auto backward = [&](int k) { return Backward{table[k].first, v - 1 - table[k].second}; };
  Program program;
  for (int k = 0; k < warmup; ++k) program.push_back(forward(k));
  for (int k = 0; k < total - warmup; ++k) {
    program.push_back(forward(warmup + k));
    program.push_back(backward(k));
  }
  for (int k = total - warmup; k < total; ++k) program.push_back(backward(k));
  program.push_back(OptimizerStep{});
  return program;
}

Schedule make_interleaved_1f1b(int p, int m, int v) {
  require_shape(p, m, v);
  return per_stage(p, [&](int s) { return make_interleaved_1f1b_stage(p, m, v, s); });
}

Schedule make_schedule(std::string_view kind, int p, int m, int v) {
  const std::optional<ScheduleKind> parsed = parse_choice<ScheduleKind>(kind);
  if (!parsed)
    throw Error(ErrorKind::kConfig, "unknown pipeline schedule \"" + std::string(kind) +
                                        "\": expected one of \"layer\", \"gpipe\", \"1f1b\", \"interleaved\"");
  return make_schedule(*parsed, p, m, v);
}

Schedule make_schedule(ScheduleKind kind, int p, int m, int v) {
  const std::string name(name_of(kind));
  if (kind == ScheduleKind::interleaved) return make_interleaved_1f1b(p, m, v);
  if (v != 1)
    throw Error(ErrorKind::kConfig, "pipeline schedule \"" + name + "\" runs one chunk per stage, but " +
                                        std::to_string(v) +
                                        " virtual stages were requested: use \"interleaved\" for more than 1");
  if (kind == ScheduleKind::layer) {
    if (m != 1)
      throw Error(ErrorKind::kConfig, "pipeline schedule \"layer\" runs a single micro-batch, but " +
                                          std::to_string(m) + " were requested: use \"gpipe\" or \"1f1b\" for more");
    return make_layer_parallel(p);
  }
  if (kind == ScheduleKind::gpipe) return make_gpipe(p, m);
  return make_1f1b(p, m);
}

}  // namespace troupe::pipeline
