// ProcessFaults: the clauses of one rank process, by step, each taken once.
#include "runtime/supervision/process_faults.h"

namespace troupe::supervision {

ProcessFaults::ProcessFaults(const FaultPlan& plan, int rank, int replica, int tensor_index, bool shards,
                             std::int64_t joined_at) {
  for (const FaultClause& c : plan.clauses) {
    if (c.step <= joined_at) continue;
    const bool mine = (c.target == FaultTarget::rank && c.index == rank) ||
                      (shards && c.target == FaultTarget::shard && c.shard == tensor_index && c.replica == replica);
    if (mine) left_.push_back(c);
  }
}

std::optional<FaultClause> ProcessFaults::take(std::int64_t step) {
  for (auto it = left_.begin(); it != left_.end(); ++it)
    if (it->step == step) {
      FaultClause c = *it;
      left_.erase(it);
      return c;
    }
  return std::nullopt;
}

}  // namespace troupe::supervision
