// Owns ProcessFaults: fault.inject's clauses aimed at one rank process of a multi-process run, each taken
// once, as its step begins there — so that the process code only carries them out (a signal, an actor
// killed, a step that throws) and which clause fires when is tested without processes.
//
// A clause hits world rank `rank` (replica d, tensor index t of the Topology) when it is "kill|stall rank
// R" with R = rank, or — tensor-shard processes — "kill|throw shard T ... on replica D" with (D, T) = (d, t).
// A restarted process skips the clauses of the steps up to the one it joined at (the one that ended its
// predecessor among them). One clause fires per attempt of a step: a second for the same step fires in
// its re-run, where the process lived through the first.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "runtime/supervision/fault_plan.h"

namespace troupe::supervision {

class ProcessFaults {
 public:
  // `shards`: the run's tensor shards are processes (shard clauses hit them).
  ProcessFaults(const FaultPlan& plan, int rank, int replica, int tensor_index, bool shards, std::int64_t joined_at = -1);

  // The clause that fires as step `step` begins here, if any (removed: it fires once).
  std::optional<FaultClause> take(std::int64_t step);
  bool empty() const { return left_.empty(); }

 private:
  std::vector<FaultClause> left_;
};

}  // namespace troupe::supervision
