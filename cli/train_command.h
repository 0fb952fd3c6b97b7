// Owns `troupe train`: options, the training run with progress, its run directory (cli/run_dir.h),
// loss dumps and weight files.
//
// A run directory is kept when asked for: --run-dir DIR, or --runs PARENT for a fresh
// PARENT/<date>-<time>-<model>/ (the main job, scripts/train, passes --runs runs). Plain `troupe train`
// keeps none, so that quick experiments, tests and scripts leave nothing behind they did not ask for.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace troupe {

struct TrainOptions {
  std::optional<std::string> config_path;
  std::vector<std::string> sets;        // "key=value", applied in order after the file
  std::optional<long long> steps;       // shorthand for train.steps, applied last
  std::optional<unsigned long long> seed;
  std::string save_path;
  std::string init_from;
  std::string resume;       // --resume: a checkpoint directory (train.checkpoint_dir) or one checkpoint in it
  std::string dump_losses;
  std::string trace_path;
  std::string run_dir;      // --run-dir: this directory (new or empty)
  std::string runs_parent;  // --runs: a fresh directory under this one (ignored when run_dir is given)
  bool print_config = false;
  bool print_plan = false;  // print the Topology (actors/runner.h: describe_plan) and exit
  // Multi-process data parallelism (comm.transport = tcp): -1 in the process the user starts (rank 0,
  // which spawns the others); r in the rank-r process it spawned. `args` are the command line after the
  // program name, which the spawned ranks repeat.
  int rank = -1;
  std::vector<std::string> args;
};

// Runs training; returns the process exit code. Throws troupe::Error for bad input.
int run_train(const TrainOptions& options);

}  // namespace troupe
