// Owns step_group: one training step of a group of actor pipelines that re-run an interrupted step
// together — the replicas of a DataParallelTrainer, the D x T tensor pipelines of a
// TensorPipelineTrainer — driven from the requester's thread; the round logic is the plain
// supervision::GroupRound (runtime/supervision/group_round.h), this only maps messages to it.
//
// Member m is the pipeline whose replica actor answers as m (PipelineOptions::member) and whose
// coordinator is coordinators[m]; every member has been sent (step_atom, step) already. A member that
// restarted one of its actors mid-step says so (interrupted_atom); then, in one round:
//   1. hooks.abort(): every group of the step is aborted — a collective waiting for the interrupted member
//      throws comm::GroupAborted instead of waiting for it, and no member commits the step on its own;
//   2. every member abandons the step — or, done already, will undo it — and answers quiet_atom once none
//      of its actors touches a group (its stages stopped, its buckets and updates finished);
//   3. hooks.reform(): the groups are made whole (the abandoned step's messages dropped), and every member
//      re-runs the step from its boundary (rerun_atom), answering as for a step.
// A death during a round is covered by its re-run; one after the re-run order starts another round. Each
// member's restart intensity bounds the rounds: past it, that member fails the step (hooks.failed), and
// every other member is stopped with it (stop_atom), so the step ends with an error in bounded time; so
// does a member that is not quiet within `quiet_timeout` of the abandon order.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "models/step_stats.h"
#include "runtime/error.h"

namespace troupe {

struct GroupStepHooks {
  std::function<void()> abort;               // every group the step uses
  std::function<void()> reform;              // after every member is quiet
  std::function<void(int member, Error)> failed;  // a member failed for good (the first one, and any after)
  std::function<std::string(int member)> name;   // for a report: "replica 1"
};

// Collects every member's answer to the step into stats[m]; `round`: the rounds so far, over every step
// (read and advanced).
void step_group(caf::scoped_actor& self, std::int64_t step, const std::vector<caf::actor>& coordinators,
                std::vector<StepStats>& stats, const GroupStepHooks& hooks, std::uint64_t& round,
                std::chrono::milliseconds quiet_timeout);

}  // namespace troupe
