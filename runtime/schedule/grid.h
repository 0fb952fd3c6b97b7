// Owns the step x stage text grid of a simulated pipeline schedule, with marked cells (where a step failed).
#pragma once

#include <string>
#include <vector>

#include "runtime/schedule/instr.h"
#include "runtime/schedule/simulator.h"

namespace troupe::pipeline {

struct GridOptions {
  // Show sends and receives (they take no time under the default costs, so they share a row with the
  // compute that follows them). Off: compute and STEP only, one instruction per cell.
  bool show_communication = false;
  // Instructions to mark as ">B3<": e.g. the instruction whose execution failed. Marked instructions
  // are shown even when they are communication and show_communication is off.
  std::vector<InstrRef> marks;
};

// Renders the simulated timeline as text: one column per stage, one row per time step (0 .. makespan-1,
// plus a row for instructions that start exactly at the makespan, such as a free STEP). A cell holds
// the instructions that start at that step, or repeats the compute still running from an earlier step
// (a backward of cost 2 fills two rows), or "." when the stage is idle. When the run stopped early
// (deadlock), a last row "blocked" shows each unfinished stage's next instruction; a marked instruction
// that never ran appears there too. Chunk prefixes are printed when v > 1. Example (1F1B, p=2, m=2):
//
//   step  stage 0  stage 1
//      0  F0       .
//      1  F1       F0
//      2  .        B0
//      3  .        B0
//      ...
//
// Throws troupe::Error(ErrorKind::kInput) for a mark outside the schedule.
std::string render_grid(const SimResult& result, const GridOptions& options = {});

// Simulates `schedule` (compute only or with communication; compute-only schedules get
// add_communication first) and renders it.
std::string render_grid(const Schedule& schedule, int p, int v = 1, const GridOptions& options = {},
                        const Costs& costs = {});

}  // namespace troupe::pipeline
