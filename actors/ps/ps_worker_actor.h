// Owns the parameter-server worker actor: one data-parallel worker of a ps run (pull, forward and
// backward on its share of the batch, push), run on request for each step.
//
// Detached (a thread of its own, the CPU its worker computes on) because a step blocks: it waits for
// the shards' answers to its pull and push (actors/ps/ps_actor.h) or, in a worker process, for rank
// 0 over its link. Its worker's failure is its answer, not its death: the trainer that asked decides
// which failure is the cause (a dead remote worker before the local one's timeout) and names it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "actors/protocol.h"

namespace troupe {
class ActorSystem;
}

namespace troupe::ps {

// One step of one worker: its per-row losses by micro-batch, and the clipping round's global norm
// (worker 0 of a clipped sync run; 0 otherwise).
struct WorkerStep {
  std::vector<Tensor> losses;
  double norm = 0.0;
};
using WorkerJob = std::function<WorkerStep(std::int64_t step, const Batch& batch)>;

struct PsWorkerActorState {
  WorkerJob job;
  static inline const char* name = "troupe.ps_worker";
};

// (step_atom, int64_t step, Batch batch) -> WorkerStep, or an error (sec::runtime_error, int32_t kind,
// std::string text) when the worker's step threw.
caf::behavior ps_worker_actor(caf::stateful_actor<PsWorkerActorState>* self, WorkerJob job);

// Asks each of `workers` for (step, batch) at once and collects the answers in worker order: every
// answer's WorkerStep, or the failure of each worker that failed (its own troupe::Error kind and text).
struct WorkerAnswers {
  std::vector<WorkerStep> steps;
  std::vector<std::optional<Error>> failures;
};
WorkerAnswers ask_workers(caf::actor_system& system, const std::vector<caf::actor>& workers, std::int64_t step,
                          const Batch& batch);

// Spawns one worker actor per job, asks each once, waits for their ends; the first failure in worker
// order, if any.
std::optional<Error> run_worker_actors(ActorSystem& system, std::vector<WorkerJob> jobs, std::int64_t step,
                                       const Batch& batch);

}  // namespace troupe::ps

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::ps::WorkerStep)
