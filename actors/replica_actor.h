// Owns the replica actor: one pipeline replica's supervisor and step coordinator — it monitors the
// replica's stage, optimizer-state and gradient-exchange actors, drives each training step through
// the StepCoordinator (actors/state/step_coordinator.h), and names a dead child's place.
//
// It is an event-based actor on CAF's scheduler (it never blocks): a step is a request,
// (step_atom, int64_t step) from a requester, answered by a message to that requester:
//   (done_atom, int replica, StepStats)                          the step's statistics
//   (failed_atom, int replica, int32_t kind, std::string report) the supervisor's report: which actor
//                                                                died, its place, the step, the cause,
//                                                                and the step x stage grid
// so that one thread can step every replica of a process at once and collect the answers in any
// order.
//
// Restarts (fault.max_restarts > 0): a stage or optimizer-state actor that dies is respawned on the same
// StageWorker (one-for-one) while the supervisor's restart intensity allows. How much is redone is
// restart_scope()'s (actors/state/restart_scope.h): a stage that died in the forward/backward phase
// before anything of the step left it for good redoes the step alone from its boundary while the other
// stages keep their work and send it again what they had sent it (same attempt; duplicates are dropped
// on arrival); an optimizer-state actor that died before the update is just replaced. Otherwise every
// stage rewinds to the step's boundary (each keeps a copy of its state as a step begins), and the
// interrupted step is re-run with the same batch as a new attempt — messages and replies of the old
// attempt are dropped — so the run goes on bitwise as if nothing had happened.
//
// Under data parallelism with every replica an actor of this process (PipelineOptions::group_restarts),
// the re-run is the group's: the replica tells its requester (interrupted_atom) instead of re-running
// alone, and the requester — the DataParallelTrainer, supervisor of the replicas — aborts the step's
// gradient groups, has every replica abandon the step (abandon_atom, answered quiet_atom once none of
// its actors uses a group), reforms the groups and orders the re-run on all (rerun_atom); see
// actors/data_parallel.h. A replica whose peers are other processes (comm.transport = tcp) runs the same
// way, its requester being its process's DataParallelTrainer, which re-forms the groups with the other
// processes (actors/process_recovery.h).
//
// Past the intensity, with replica processes that do not restart (process_restart_refusal), and for a
// gradient-exchange actor, a death fails the step. A child that dies between steps then fails the next step; after a failure every step
// fails.
#pragma once

#include <chrono>
#include <optional>

#include "actors/protocol.h"
#include "actors/state/step_coordinator.h"
#include "runtime/supervision/fault_plan.h"
#include "runtime/supervision/supervisor.h"
#include "runtime/trace/trace.h"

namespace troupe {

struct ReplicaActorState {
  // Owned by the ActorPipeline that spawns this actor and waits for its end.
  PipelineDriver* driver = nullptr;
  supervision::Supervisor* supervisor = nullptr;
  TraceRecorder* const* trace = nullptr;  // the pipeline's trace, set between steps (may be null)
  std::vector<caf::actor> stages, optimizers, exchanges;  // index = stage; exchanges[s] may be null

  // The step in progress.
  std::optional<StepCoordinator> step;
  caf::actor requester;
  std::chrono::steady_clock::time_point started;
  double trace_begin = 0.0;
  std::uint64_t progress = 0;  // messages received in this step, for the no-progress timeout
  // The first failure (kind, report); every later step fails with it.
  std::optional<std::pair<ErrorKind, std::string>> failure;

  // Restarts (fault.*): the attempt at the step in progress (replies and reports of an older one are
  // dropped).
  bool restarts = false;
  bool group = false;        // the replicas re-run together (PipelineOptions::group_restarts)
  std::uint64_t round = 0;   // the requester's round of abandon and re-run orders (group only)
  bool group_round = false;  // between the round's abandon order and its re-run order (group only)
  std::optional<StepCoordinator::Start> start;  // what the stages began the step in progress with
  std::uint64_t attempt = 0;
  std::chrono::steady_clock::time_point born = std::chrono::steady_clock::now();  // the intensity's clock
  // A request failed while restarts are on: the death behind it restarts the step; if none comes, this.
  std::optional<std::pair<ErrorKind, std::string>> suspect;
  std::vector<supervision::FaultClause> faults;  // fault.inject's clauses for this replica, not fired yet
  std::vector<std::pair<supervision::FaultTarget, int>> fired;  // actors a clause hit in this attempt
  static inline const char* name = "troupe.replica";
};

// Every stage, optimizer and exchange actor must be monitored by this actor (spawn it first and pass
// it to the stages as their coordinator with peers_atom).
caf::behavior replica_actor(caf::stateful_actor<ReplicaActorState>* self, PipelineDriver* driver,
                            supervision::Supervisor* supervisor, TraceRecorder* const* trace);

// A step ended with (failed_atom, ...): the troupe::Error to throw on the requester's side.
Error replica_failure(std::int32_t kind, const std::string& report);

}  // namespace troupe
