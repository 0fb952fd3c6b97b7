// Owns RunDir: the directory one `troupe train` run keeps everything in, and its log.
//
// Layout (paths relative to the directory):
//   config.toml          the resolved configuration: `troupe train --config DIR/config.toml` repeats the run
//   plan.txt             the plan (actors/runner.h describe_plan): ranks, devices, partition, programs
//   log.txt              what the run printed on stdout, and its error if it failed (the live progress
//                        line is logged every ~5% of the run, as on a non-terminal)
//   metrics.jsonl        one row per step (cli/metrics.h); also metrics.csv
//   trace.json           the Chrome trace of every actor (Perfetto, chrome://tracing)
//   weights.safetensors  the final weights (they describe their model: --init-from needs no model flags)
//   report.html          the report page (`troupe report DIR`)
// While the run trains, the metrics are metrics.partial.jsonl / metrics.partial.csv; a run that ends
// well renames them. A run that fails leaves them so named and writes FAILED.txt with its error: nothing
// partial carries a final name. Files with final names are written whole (temporary file, rename).
#pragma once

#include <cstdio>
#include <string>

#include "cli/metrics.h"

namespace troupe {

class RunDir {
 public:
  // Creates `dir` (parents too). An existing directory must be empty; one that cannot be created or
  // written is troupe::Error(kUsage) naming `option` (--run-dir).
  RunDir(const std::string& dir, const std::string& option);
  ~RunDir();
  RunDir(const RunDir&) = delete;
  RunDir& operator=(const RunDir&) = delete;

  // A directory name under `parent` not yet taken: PARENT/<YYYYmmdd>-<HHMMSS>-<model>, with "-2", "-3"
  // appended when a run started in the same second.
  static std::string fresh_path(const std::string& parent, const std::string& model);

  const std::string& dir() const { return dir_; }
  std::string path(const std::string& name) const;
  // Writes DIR/name whole (temporary file, then rename).
  void write_file(const std::string& name, const std::string& contents) const;
  // The log file, for ProgressReporter; write through print() otherwise.
  std::FILE* log() const { return log_; }

  void add_metrics(const MetricsRow& row, const std::string& unit);
  // The run ended well: the metrics take their final names.
  void finish();
  // The run failed with `error`: FAILED.txt and the log's last line say so.
  void fail(const std::string& error);

 private:
  std::string dir_;
  std::FILE* log_ = nullptr;
  std::FILE* jsonl_ = nullptr;
  std::FILE* csv_ = nullptr;
};

// Prints `text` to stdout and, when `run` is not null, to its log.
void print_and_log(const RunDir* run, const std::string& text);

}  // namespace troupe
