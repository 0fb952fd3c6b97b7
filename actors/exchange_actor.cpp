// The gradient-exchange actor: bucket reductions of one stage replica, on request of its stage.
#include "actors/exchange_actor.h"

#include "actors/stage_actor.h"

namespace troupe {

caf::behavior exchange_actor(caf::stateful_actor<ExchangeActorState>* self, GradientSync* sync) {
  self->state.sync = sync;
  self->set_exception_handler(failure_handler("gradient exchange of stage replica " + std::to_string(sync->replica()) + ": "));
  return {
      // A failing collective is kept by the sync for its stage (which names the peer); this actor
      // lives on, counting the rest of the step's buckets so that the stage's wait ends.
      [=](proto::exchange_atom, std::uint64_t bucket) { self->state.sync->reduce_submitted(static_cast<std::size_t>(bucket)); },
      // Answered after every bucket submitted before it (one sender's messages arrive in order): the
      // replica waits for it before its group is reformed.
      [=](proto::quiet_atom) { return true; },
  };
}

caf::actor spawn_exchange_actor(caf::actor_system& system, GradientSync& sync) {
  caf::actor actor = system.spawn<caf::detached>(exchange_actor, &sync);
  // Whenever it ends, its stage must not wait for buckets it will never reduce (at shutdown no step
  // is running, so this changes nothing).
  caf::actor_cast<caf::abstract_actor*>(actor)->attach_functor([&system, &sync](const caf::error& reason) {
    sync.abort(std::make_exception_ptr(Error(ErrorKind::kIo, "stage " + std::to_string(sync.stage()) +
                                                                  ": its gradient-exchange actor ended: " +
                                                                  system.render(reason))));
  });
  sync.set_exchange([actor](std::size_t bucket) {
    caf::anon_send(actor, proto::exchange_atom::value, static_cast<std::uint64_t>(bucket));
  });
  return actor;
}

}  // namespace troupe
