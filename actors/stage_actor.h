// Owns the stage actor: a thin CAF shell mapping protocol messages onto a StageWorker.
#pragma once

#include "actors/protocol.h"

namespace troupe {

struct StageActorState {
  StageWorker* worker = nullptr;  // owned by the coordinator, which outlives the actor
  std::vector<caf::actor> peers;
  caf::actor coordinator;
  bool running = false;   // between run_atom and apply_atom; messages may arrive before run_atom
  bool reported = false;
  static inline const char* name = "troupe.stage";
};

// Runs as a detached actor (its own thread: the CPU "device" the stage is pinned to).
caf::behavior stage_actor(caf::stateful_actor<StageActorState>* self, StageWorker* worker);

}  // namespace troupe
