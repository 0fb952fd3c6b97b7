// Owns FaultPlan: fault.inject parsed once into typed clauses — which fault, on which actor, at which
// step — so that a run can rehearse its failures (docs/failures.md has the grammar).
//
//   plan    := clause { ";" clause }          blank clauses are ignored; words are case-sensitive
//   clause  := action target N "at step" S [ point ] [ "on replica" R ]
//            | ("kill" | "throw") "shard" T [ "of stage" P ] "at step" S [ point ] [ "on replica" R ]
//            | ("kill" | "stall") "rank" R "at step" S
//            | "throw" "worker" W "at step" S
//   action  := "kill"    the actor is ended as a crash would end it (CAF exit reason kill)
//            | "throw"   a stage's first backward of the step throws; an optimizer's update throws
//            | "nan"     a stage's first gradient turns NaN at the end of the backward (stage only;
//                        train.on_nonfinite decides: the step is skipped, or the run stops)
//   target  := "stage" | "optimizer"          stage N of replica R (default 0), or its optimizer-state actor;
//                                             under tensor parallelism, tensor shard 0's of that stage
//   "shard" T [ "of stage" P ]               tensor shard T of stage P (default 0) of replica R: the actor
//                                             that runs that shard (parallel.tensor > 1, one process), or,
//                                             shards as processes (tcp), that shard's process ("kill": it
//                                             dies of SIGKILL; shard 0 of replica 0: rank 0's actor);
//                                             "throw": its backward of the step throws.
//                                             In a parameter-server run (parallel.gradient_exchange = ps,
//                                             ps.mode = sync) "throw shard T at step S" hits parameter-server
//                                             shard T: its update of step S throws, and it is restarted
//                                             from its step-boundary snapshot (actors/ps/ps_actor.h)
//   point   := "micro-batch" K [ "forward" | "backward" ]
//                                             kill or throw of a stage (or a shard's stage) only: the fault
//                                             strikes mid-step, as the stage is about to run its first
//                                             forward (default) or backward of micro-batch K in its program
//                                             order, instead of as the step begins (kill) or at its first
//                                             backward (throw)
// Each clause fires once, in the first attempt of step S; a second clause for the same actor and step
// fires in the step's re-run (a fault during the re-run), a third in the re-run after that.
// Rank clauses hit a whole data-parallel or tensor-shard rank process (comm.transport = tcp or shm) as step S begins there:
// "kill rank R" makes it die of SIGKILL, "stall rank R" stops it (SIGSTOP) as a hung process stands, so that
// its heartbeats stop. A restarted process does not fire the clauses of steps up to the one it joined at.
// "throw worker W" hits parameter-server worker W (parallel.gradient_exchange = ps): its step S throws after
// its backward, before its push; a worker thread is restarted by the trainer, a worker process dies of it
// and rank 0 restarts the process.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::supervision {

enum class FaultAction { kill, raise, nan, stall };
enum class FaultTarget { stage, optimizer, shard, rank, worker };
// Which pass of a micro-batch a mid-step fault strikes before.
enum class FaultPass { forward, backward };

struct FaultClause {
  FaultAction action = FaultAction::kill;
  FaultTarget target = FaultTarget::stage;
  int index = 0;           // the stage (of a shard too), or (target rank) the rank, or (target worker) the ps worker
  std::int64_t step = 0;
  int replica = 0;         // of parallel.data
  int shard = 0;           // the tensor shard of parallel.tensor (0 but for target shard)
  int microbatch = -1;     // a mid-step point: before `pass` of this micro-batch; -1: none (the step's start)
  FaultPass pass = FaultPass::forward;
  friend bool operator==(const FaultClause&, const FaultClause&) = default;
};

struct FaultPlan {
  std::vector<FaultClause> clauses;
  bool empty() const { return clauses.empty(); }
};

// Throws troupe::Error(kConfig) that quotes the bad clause and says what was expected there.
FaultPlan parse_fault_plan(std::string_view text);

// Removes from `pending` the first clause aimed at actor `index` in step `step` and says whether there was
// one: each clause fires once, a second one for the same actor and step in the re-run.
bool take_clause(std::vector<FaultClause>& pending, int index, std::int64_t step);
// The clause as fault.inject spells it ("kill stage 1 at step 7").
std::string to_string(const FaultClause& clause);
// The plan as fault.inject spells it, clauses joined by "; ".
std::string to_string(const FaultPlan& plan);

}  // namespace troupe::supervision
