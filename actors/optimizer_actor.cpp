// The optimizer-state actor: the update of one stage's parameters, on request of its stage actor.
#include "actors/optimizer_actor.h"

#include "actors/stage_actor.h"

namespace troupe {

caf::behavior optimizer_actor(caf::stateful_actor<OptimizerActorState>* self, StageWorker* worker) {
  self->state.worker = worker;
  self->set_exception_handler(failure_handler("optimizer state of stage " + std::to_string(worker->stage()) + ": "));
  return {
      [=](proto::update_atom, double clip, double lr) {
        self->state.worker->update_params(clip, lr);
        return true;
      },
      // Answered after every update asked before it (a mailbox is FIFO per sender and the actor handles
      // one message at a time): the supervisor waits for it before rewinding a stage.
      [=](proto::quiet_atom) { return true; },
  };
}

}  // namespace troupe
