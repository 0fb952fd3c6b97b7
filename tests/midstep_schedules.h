// Owns the pipeline schedules the restart tests strike mid-step (tests/test_restart.cpp,
// tests/test_restart_scope.cpp) and a layout's settings with a fault.inject plan added.
#pragma once

#include <string>
#include <vector>

namespace troupe {

// 1F1B, GPipe and interleaved (2 virtual stages), each with 4 micro-batches so that a fault can strike with
// some of them done on every stage.
inline const std::vector<std::vector<std::string>>& midstep_schedules() {
  static const std::vector<std::vector<std::string>> schedules = {
      {"parallel.microbatches=4"},
      {"parallel.microbatches=4", "parallel.schedule=gpipe"},
      {"parallel.microbatches=4", "parallel.schedule=interleaved", "parallel.virtual_stages=2"}};
  return schedules;
}

// `sets` with "fault.inject=PLAN" added; `sets` as they are for an empty plan (the clean run).
inline std::vector<std::string> with_faults(std::vector<std::string> sets, const std::string& plan) {
  if (!plan.empty()) sets.push_back("fault.inject=" + plan);
  return sets;
}

}  // namespace troupe
