// Owns the tensor-shard actor: one tensor-parallel shard of one model replica (its Trainer: its slice of the parameters, their gradients and optimizer state), run step by step on request.
//
// Detached (a thread of its own, the CPU its shard computes on) because a step blocks: the layers'
// collectives (runtime/comm/tensor_parallel_ops.h) wait on the other shards of its group, and a
// blocking actor on CAF's shared scheduler would stall every other actor queued on that worker. Its
// shard's failure is its answer: the trainer that asked names the first failure, and the actor breaks
// its group first (on_failure) so that the peers blocked in a collective with it fail at once instead
// of waiting out comm.timeout_s. Its death (a crash, a kill) is seen by the owner's supervisor
// (runtime/supervision/), which names it by its place: "replica d/stage p/tensor t".
//
// Restartable (fault.max_restarts > 0, actors/tensor_parallel.h): a failure is also the actor's death,
// as a stage actor's is, for its supervisor to restart it one-for-one — except one a re-run would meet
// again (failure_restarts), and a collective whose step the supervisor abandoned on purpose
// (comm::GroupAborted), which is answered as kShardStepAbandoned and leaves the actor waiting for the
// re-run.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "actors/protocol.h"
#include "models/trainer.h"

namespace troupe {

namespace proto {
using eval_atom = caf::atom_constant<caf::atom("tp_eval")>;
using load_atom = caf::atom_constant<caf::atom("tp_load")>;
using save_atom = caf::atom_constant<caf::atom("tp_save")>;
using state_atom = caf::atom_constant<caf::atom("tp_state")>;
using restore_atom = caf::atom_constant<caf::atom("tp_restore")>;
}  // namespace proto

// The kind in an error answer (sec::runtime_error, kind, text) for a step abandoned on purpose: not the
// shard's failure, the actor lives on.
inline constexpr std::int32_t kShardStepAbandoned = -1;

// Whether a shard's own failure of `kind` ends a restartable actor, to be restarted: a crash, an I/O or
// internal error — not bad input, a shape, or a non-finite step under train.on_nonfinite = stop, which the
// re-run would meet again (those are answered, and the actor lives on).
constexpr bool failure_restarts(ErrorKind kind) { return kind == ErrorKind::kIo || kind == ErrorKind::kInternal; }

struct TensorShardActorState {
  Trainer* shard = nullptr;         // owned by the trainer that spawned the actor, which outlives it
  std::function<void()> on_failure;  // breaks the shard's groups (its peers stop waiting for it)
  bool restartable = false;          // a failure ends the actor (its supervisor restarts it)
  static inline const char* name = "troupe.tensor_shard";
};

// Requests, each answered when the shard is done, or with an error (sec::runtime_error, int32_t kind,
// std::string text) when it threw:
//   (step_atom, int64_t step)   -> StepStats     one training step on the step's batch
//   (step_atom, int64_t step, bool keep_boundary, bool rewind) -> StepStats   the same, first keeping
//                                                the shard's step-boundary copy, or rewinding to it (a re-run)
//   (eval_atom)                 -> EvalStats     the held-out loss
//   (load_atom, std::string)    -> bool          a weights file (whole tensors; the shard keeps its slice)
//   (save_atom, std::string)    -> bool          gathers whole tensors; shard 0 writes the file
//   (state_atom, int64_t done)  -> TrainingState the whole state by name (gathered; every shard's is whole)
//   (restore_atom, TrainingState, std::string source) -> bool   whole state in, the shard keeps its slices
caf::behavior tensor_shard_actor(caf::stateful_actor<TensorShardActorState>* self, Trainer* shard,
                                 std::function<void()> on_failure, bool restartable);

}  // namespace troupe

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::EvalStats)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::TrainingState)
