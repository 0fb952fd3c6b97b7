// restart_scope: the rule that keeps the survivors' work over a one-for-one restart when nothing of the
// step has left the dead actor for a place it cannot be sent again.
#include "actors/state/restart_scope.h"

#include <algorithm>

namespace troupe {

RestartScope restart_scope(const RestartFacts& f) {
  if (!f.mid_step) return RestartScope::nothing;
  // A group round already re-runs the step on every member: a death during it is covered by it.
  if (f.group_round) return RestartScope::whole_step;
  // A clause meant for "the step's re-run" fires in a whole re-run, as before (fault_plan.h).
  if (f.faults_pending) return RestartScope::whole_step;
  // Updates run in the last phases only: before them an optimizer-state actor holds nothing of the step.
  if (f.optimizer_state) return f.forward_backward ? RestartScope::nothing : RestartScope::whole_step;
  if (f.forward_backward && !f.reported_ready && f.can_redo_alone) return RestartScope::stage_alone;
  return RestartScope::whole_step;
}

bool faults_pending_for(const std::vector<supervision::FaultClause>& pending, std::int64_t step, int stage) {
  return std::any_of(pending.begin(), pending.end(), [&](const supervision::FaultClause& c) {
    const bool own = stage >= 0 && c.target == supervision::FaultTarget::stage && c.index == stage;
    return c.step == step && !own;
  });
}

}  // namespace troupe
