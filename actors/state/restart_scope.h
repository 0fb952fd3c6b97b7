// Owns restart_scope: how much of an interrupted step a one-for-one restart must redo — nothing, the
// restarted stage's own share alone (its neighbours keep theirs), or the whole step on every stage —
// decided from plain facts the replica actor gathers, so that the rule is tested without actors.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/supervision/fault_plan.h"

namespace troupe {

enum class RestartScope {
  // Between steps, or an optimizer-state actor that died before its stage asked it for the update: the
  // step goes on as it stands (the next update goes to the new actor).
  nothing,
  // A stage actor that died in the forward/backward phase: only it redoes the step from its boundary;
  // the other stages keep their finished micro-batches, their accumulated gradients and everything they
  // sent (kept until the step ends: StageWorker::keep_sent), which they send the restarted stage again.
  stage_alone,
  // Every stage rewinds to the step's boundary and the step is re-run (on every replica of a group).
  whole_step,
};

// What the supervisor knows when it restarts an actor of its replica.
struct RestartFacts {
  bool mid_step = false;           // a step is in progress
  bool optimizer_state = false;    // the dead actor is a stage's optimizer-state actor (else the stage actor)
  bool forward_backward = false;   // the step is in its first phase: not every stage has reported ready
  bool reported_ready = false;     // the dead stage had reported ready in this step
  bool can_redo_alone = false;     // StageWorker::can_redo_alone() of the dead stage
  bool faults_pending = false;     // fault.inject clauses of this step wait for a re-run (faults_pending_for)
  bool group_round = false;        // a group round (abandon, re-run) is under way for this step
};

RestartScope restart_scope(const RestartFacts& facts);

// Whether any clause of step `step` in `pending` (the clauses not fired yet) hits an actor other than
// stage `stage`'s stage actor (a clause waiting for a re-run of the whole step); `stage` < 0: any clause
// of the step.
bool faults_pending_for(const std::vector<supervision::FaultClause>& pending, std::int64_t step, int stage);

}  // namespace troupe
