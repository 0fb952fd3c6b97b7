// Owns the pipeline actors' protocol: every atom and every message type stage actors exchange (CAF 0.17).
//
//   requester -> replica   (step_atom, int64_t step)         one training step (replica_actor.h), answered by
//   replica -> requester   (done_atom, int replica, StepStats) or
//                          (failed_atom, int replica, int32_t kind, std::string report)
//   owner -> replica       (children_atom, stages, optimizers, exchanges): the actors it supervises
//   replica -> itself      (check_atom, int64_t step, uint64_t progress): the no-progress watchdog
//   The replica actor is the stages' coordinator:
//   coordinator -> stage   (peers_atom, std::vector<caf::actor> stages, caf::actor coordinator)
//   coordinator -> stage   (run_atom, RunOrder)               begin (or re-run) a step: its share of the batch,
//                                                             the step and the attempt (below)
//   stage -> stage         StageMessage                      activations forward, gradients backward
//   stage -> coordinator   (ready_atom, int stage, std::vector<Tensor> losses, Tensor tied_grad, uint64_t attempt)
//   coordinator -> stage   (finish_atom, Tensor tied_grad)   -> std::vector<std::vector<double>> sumsq
//   coordinator -> stage   (apply_atom, double clip, double lr, bool skip) -> Tensor (new wte on its owner)
//     stage -> its optimizer-state actor (update_atom, double clip, double lr) -> bool, then the stage
//     finishes the step and answers the coordinator; skip (train.on_nonfinite = skip and this step's
//     numbers were not finite): no update, the stage finishes the step at once
//   coordinator -> stage   (tied_atom, Tensor wte)           -> bool (replica refreshed)
//   Restarts (fault.max_restarts): the coordinator numbers its attempts at steps; a step re-run after a
//   restart is a new attempt, and StageMessages, ready reports and replies of an older one are dropped.
//   coordinator -> stage   (optimizer_atom, caf::actor)      its optimizer-state actor was restarted
//   coordinator -> stage   (resend_atom, int stage)          stage `stage` restarted mid-step and redoes the
//                                                             step alone (same attempt): send it again every
//                                                             message sent to it in the step
//   coordinator -> optimizer-state actor (quiet_atom) -> bool: every update asked of it before is done
//   owner -> replica       (children_atom) -> std::vector<caf::actor>: every child now alive, to end them
//   stage -> its gradient-exchange actor (exchange_atom, uint64_t bucket): reduce that bucket across
//     the stage's replicas (exchange_actor.h); the stage waits for the step's buckets in finish
//   Restarts under data parallelism (replicas as actors of one process, actors/data_parallel.h): the
//   trainer supervises the group of replicas and re-runs an interrupted step on every one of them.
//   replica -> requester   (interrupted_atom, int replica, int64_t step, uint64_t round): a child died
//                          mid-step and was restarted; the step must be re-run on every replica
//   requester -> replica   (abandon_atom, int64_t step, uint64_t round): abandon the step (the groups are
//                          aborted); answered (quiet_atom, int replica, uint64_t round) once none of the
//                          replica's actors touches a group any more
//   requester -> replica   (rerun_atom, int64_t step, uint64_t round): the groups are reformed, re-run it;
//                          answered like a step
//   requester -> replica   (stop_atom, int32_t kind, std::string report): another replica failed for good;
//                          answered (failed_atom, ...), and so is every later step
//   coordinator -> stage   (abandon_atom) -> bool: stop the step, use no group until the next run order
//   coordinator -> gradient-exchange actor (quiet_atom) -> bool: every bucket submitted before is done
//
// Tensors travel by reference inside one process (CAF messages are copy-on-write and never copied
// here); they are not serialisable, so these messages never leave the process — the network path
// carries tensors over troupe's own transport, not CAF's.
#pragma once

#include <caf/all.hpp>

#include <vector>

#include "actors/state/stage_worker.h"
#include "models/step_stats.h"

namespace troupe::proto {
using peers_atom = caf::atom_constant<caf::atom("peers")>;
using run_atom = caf::atom_constant<caf::atom("run")>;
using ready_atom = caf::atom_constant<caf::atom("ready")>;
using finish_atom = caf::atom_constant<caf::atom("finish")>;
using apply_atom = caf::atom_constant<caf::atom("apply")>;
using tied_atom = caf::atom_constant<caf::atom("tied")>;
using update_atom = caf::atom_constant<caf::atom("update")>;
using exchange_atom = caf::atom_constant<caf::atom("exchange")>;
using step_atom = caf::atom_constant<caf::atom("step")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using failed_atom = caf::atom_constant<caf::atom("failed")>;
using children_atom = caf::atom_constant<caf::atom("children")>;
using check_atom = caf::atom_constant<caf::atom("check")>;
using optimizer_atom = caf::atom_constant<caf::atom("optimizer")>;
using quiet_atom = caf::atom_constant<caf::atom("quiet")>;
using interrupted_atom = caf::atom_constant<caf::atom("interrupt")>;
using abandon_atom = caf::atom_constant<caf::atom("abandon")>;
using rerun_atom = caf::atom_constant<caf::atom("rerun")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using resend_atom = caf::atom_constant<caf::atom("resend")>;

// What a stage begins a step with. rewind: a re-run — the stage first abandons whatever attempt it is in
// and returns to the step's boundary (StageWorker::rewind); keep_boundary: restarts are on, so the stage
// keeps a copy of its state as the step begins (StageWorker::keep_boundary).
struct RunOrder {
  Batch batch;
  int microbatches = 1;
  float loss_scale = 1.0f;
  std::int64_t row_block = 1;
  std::int64_t step = 0;
  std::uint64_t attempt = 0;
  bool keep_boundary = false;
  bool rewind = false;
};
}  // namespace troupe::proto

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::Tensor)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::Batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::StageMessage)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::StepStats)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::proto::RunOrder)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<troupe::Tensor>)
