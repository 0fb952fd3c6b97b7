// Owns ProgressReporter: the live progress line on a terminal, plain log lines otherwise.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace troupe {

class ProgressReporter {
 public:
  ProgressReporter(std::FILE* out, std::int64_t total_steps);
  // Called after every step.
  void step(std::int64_t step, double loss, double lr, double tokens_per_s, double elapsed_s);
  // A line that must not be overwritten (evaluation results, warnings).
  void message(const std::string& line);
  void finish();

 private:
  std::FILE* out_;
  std::int64_t total_;
  bool live_;
  bool line_open_ = false;
  std::int64_t log_every_;
};

}  // namespace troupe
