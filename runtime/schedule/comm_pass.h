// Owns add_communication: the pure lowering pass that inserts sends and receives into a compute-only schedule.
#pragma once

#include "runtime/schedule/instr.h"

namespace troupe::pipeline {

// Returns `schedule` (compute only, p stages x v chunks) with the communication it implies:
//
//   Forward{mb, c} on virtual stage k = c*p + s:
//       k > 0            ->  RecvActivation{mb, c} immediately before it
//       k < p*v - 1      ->  SendActivation{mb, c} immediately after it
//   Backward{mb, c} on virtual stage k:
//       k < p*v - 1      ->  RecvGrad{mb, c} immediately before it
//       k > 0            ->  SendGrad{mb, c} immediately after it
//
// except when the neighbouring virtual stage lives on the same physical stage (only possible with
// p = 1): then the data stays local and nothing is added. OptimizerStep passes through.
// The order of compute is unchanged, so the pass never introduces a deadlock that the compute order
// did not already imply (simulate() finds those).
// Throws troupe::Error(ErrorKind::kInput) when schedule.size() != p, when an instruction's chunk is
// outside 0..v-1, or when the schedule already holds communication instructions.
Schedule add_communication(const Schedule& schedule, int p, int v = 1);

}  // namespace troupe::pipeline
