// Owns the metrics of a run: one row per training step, written the same way to metrics.jsonl and
// metrics.csv in a run directory, to --dump-losses, and read back by `troupe report`.
//
// Steps are counted from 1 everywhere a user sees them (the progress line, "eval after step N", the
// files): row `step` N is the N-th optimizer update, which the trainers index as N - 1. Its `loss` is
// the mean train loss of that update's batch, before the update; `lr` the learning rate it used.
//
// JSON line (keys in this order; a key whose value was not measured is left out):
//   step, loss, lr,                     deterministic: bitwise equal across layouts (tests compare them)
//   tokens_per_s | samples_per_s,       throughput: tokens for the gpt, samples for the mlp
//   grad_norm,                          global 2-norm before clipping (measured when train.grad_clip > 0)
//   step_s, elapsed_s,                  this step's wall time; time since the first step began
//   val_loss, val_accuracy,             after an evaluation (train.eval_every, and the last step)
//   stages: [{name, compute_s, comm_s, idle_s}]   per actor, from the trace (run directories, --trace)
//   window_us: [begin, end]             the step on the trace's clock (trace.json's ts axis)
// CSV: the same values, one column each, stages flattened as "<name>_compute_s" ("stage_0_compute_s").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace troupe {

struct StageTime {
  std::string name;  // the trace track: "stage 0", "device", "stage 0 sync"
  double compute_s = 0.0, comm_s = 0.0, idle_s = 0.0;
};

struct MetricsRow {
  std::int64_t step = 0;  // from 1
  double loss = 0.0;
  double lr = 0.0;
  double throughput = 0.0;  // per second, of `unit`s
  std::optional<double> grad_norm;
  double step_s = 0.0;
  double elapsed_s = 0.0;
  std::optional<double> val_loss, val_accuracy;
  std::vector<StageTime> stages;
  std::optional<std::pair<double, double>> window_us;
};

// "tokens" for the gpt, "samples" for the mlp: the throughput key is "<unit>_per_s".
std::string to_json_line(const MetricsRow& row, const std::string& unit);
// The header names the columns of `first`'s shape (its stages); every later row has the same tracks.
std::string csv_header(const MetricsRow& first, const std::string& unit);
std::string csv_line(const MetricsRow& row);

// Reads a metrics.jsonl file; `unit` receives "tokens" or "samples". Throws troupe::Error(kUsage) naming
// the file and line when it cannot be read or a line is not a metrics row.
std::vector<MetricsRow> read_metrics(const std::string& path, std::string* unit = nullptr);

}  // namespace troupe
