// Owns ProgressReporter: the live progress line on a terminal, plain log lines otherwise (and in a log
// file, when a run directory keeps one).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace troupe {

class ProgressReporter {
 public:
  // `unit`: what the throughput counts ("tokens" for the gpt, "samples" for the mlp). `log`, if not
  // null, receives the plain lines (every ~5% of the run) and every message.
  ProgressReporter(std::FILE* out, std::int64_t total_steps, std::string unit = "tokens", std::FILE* log = nullptr);
  // Called after every step; `step` counts from 1 (cli/metrics.h), as everything the user sees.
  void step(std::int64_t step, double loss, double lr, double per_s, double elapsed_s);
  // From now on each step's line also shows its MFU: per_s x flops_per_unit / peak_flops_per_s
  // (runtime/model_flops.h). Not called (no MFU shown) where the model's FLOPs or the device's peak are unknown.
  void show_mfu(double flops_per_unit, double peak_flops_per_s);
  // A line that must not be overwritten (evaluation results, warnings).
  void message(const std::string& line);
  void finish();

 private:
  std::FILE* out_;
  std::int64_t total_;
  std::string unit_;
  std::FILE* log_;
  bool live_;
  bool line_open_ = false;
  std::int64_t log_every_;
  double flops_per_unit_ = 0.0, peak_flops_per_s_ = 0.0;
};

}  // namespace troupe
