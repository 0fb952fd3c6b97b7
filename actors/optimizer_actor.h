// Owns the optimizer-state actor: one per pipeline stage, co-located with it (same process, same
// device), owning the stage's optimizer state during a step and applying its update. The stage actor
// asks it for the update and finishes the step when it answers, so the optimizer state is an actor of
// the Topology — where ZeRO sharding, parameter servers and CPU offload become placements of it.
#pragma once

#include "actors/protocol.h"

namespace troupe {

struct OptimizerActorState {
  StageWorker* worker = nullptr;  // its update_params(); owned by the pipeline, which outlives the actor
  static inline const char* name = "troupe.optimizer_state";
};

// (update_atom, double clip, double lr) -> bool: the stage's gradients scaled and its optimizer step
// applied. A failure ends the actor with (kind, text) as its exit reason, as a stage's does.
caf::behavior optimizer_actor(caf::stateful_actor<OptimizerActorState>* self, StageWorker* worker);

}  // namespace troupe
