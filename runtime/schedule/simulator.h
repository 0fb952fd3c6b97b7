// Owns the dry-run pipeline simulator: runs a schedule with communication, pairs sends with receives, finds deadlocks, measures bubble and buffering.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "runtime/schedule/instr.h"

namespace troupe::pipeline {

// Time each instruction takes, in abstract units (>= 0). The defaults make a backward twice a forward
// and communication free, the usual model for comparing schedules; bubble theory assumes them.
struct Costs {
  int forward = 1;
  int backward = 2;
  int optimizer_step = 0;
  int send = 0;  // a message becomes available when its send ends
  int recv = 0;
};

// When one executed instruction ran: [start, end). Zero-cost instructions have start == end.
struct Slot {
  long start = 0;
  long end = 0;
};

// One instruction of a schedule: schedule[stage][index].
struct InstrRef {
  int stage = 0;
  std::size_t index = 0;
  bool operator==(const InstrRef&) const = default;
};

struct StageStats {
  int peak_in_flight = 0;  // most activations held at once: forwards done whose backward has not run
  int peak_mailbox = 0;    // most messages delivered to this stage and not yet received
  long busy = 0;           // time spent in Forward and Backward
  long finish = 0;         // when its last executed instruction ended
};

// The outcome of simulate(). `ok()` is true when every instruction ran, every send met exactly one
// receive and no instruction ran before its inputs existed.
struct SimResult {
  Layout layout;
  Schedule schedule;                      // the simulated schedule (the grid prints from it)
  std::vector<std::vector<Slot>> slots;   // slots[s][i]: when schedule[s][i] ran; only executed ones
  bool deadlock = false;                  // some stage could never run its next instruction
  long deadlock_time = 0;                 // when everything stopped
  std::vector<std::string> unmatched;     // sends without a receive / receives without a send
  std::vector<std::string> violations;    // instructions that ran without their inputs, or twice
  std::vector<InstrRef> flagged;          // the instructions named above, and each blocked one
  std::vector<StageStats> stages;
  long makespan = 0;                      // end of the last instruction
  double bubble = 0.0;                    // 1 - sum(busy) / (p * makespan); 0 when makespan is 0

  bool ok() const { return !deadlock && unmatched.empty() && violations.empty(); }
  // Index of the next instruction stage s would run (== its program size when it finished).
  std::size_t next(int stage) const { return slots[static_cast<std::size_t>(stage)].size(); }
  // A human-readable account: makespan, bubble, per-stage peaks, then every problem; when there is a
  // deadlock, the step x stage grid (grid.h) with each blocked instruction marked.
  std::string report() const;
};

// Runs `schedule` (p stage programs over v chunks each, normally the output of add_communication) in
// lock-step time: at each time step every idle stage runs its next instructions while they can run;
// a compute instruction occupies its stage for its cost. Mailboxes are unbounded: a send never
// blocks; a receive waits until the matching send has ended. A message is keyed by its kind
// (activation or gradient), destination virtual stage and micro-batch; SendActivation{mb, c} on
// virtual stage k matches RecvActivation{mb, c'} on virtual stage k + 1, SendGrad on k matches
// RecvGrad on k - 1.
// Checked and reported in the result (never thrown): deadlock (no stage can progress while some have
// instructions left), every send matched by exactly one receive and vice versa (counted over the whole
// schedule, so it holds even where a deadlock stopped the run), and per executed instruction that its
// inputs exist: a Forward on virtual stage k > 0 after the receive of its activation (or the local
// Forward of stage k - 1 when both virtual stages share a physical stage), a Backward after its own
// Forward and, below the last virtual stage, after the receive of its gradient (or the local Backward),
// a send after the compute that produces it, OptimizerStep with no activation in flight, and no
// compute twice.
// Throws troupe::Error(ErrorKind::kInput) only for malformed input: schedule.size() != p, p or v < 1,
// a chunk outside 0..v-1, a negative micro-batch or a negative cost.
SimResult simulate(const Schedule& schedule, int p, int v = 1, const Costs& costs = {});

}  // namespace troupe::pipeline
