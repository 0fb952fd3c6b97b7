// The parameter-server worker actor: a worker's step on request, its failure as the answer.
#include "actors/ps/ps_worker_actor.h"

namespace troupe::ps {

caf::behavior ps_worker_actor(caf::stateful_actor<PsWorkerActorState>* self, WorkerJob job) {
  self->state.job = std::move(job);
  return {
      [=](troupe::proto::step_atom, std::int64_t step, const Batch& batch) -> caf::result<WorkerStep> {
        try {
          return self->state.job(step, batch);
        } catch (const Error& e) {
          return caf::make_error(caf::sec::runtime_error, static_cast<std::int32_t>(e.kind()), std::string(e.what()));
        } catch (const std::exception& e) {
          return caf::make_error(caf::sec::runtime_error, static_cast<std::int32_t>(ErrorKind::kInternal),
                                 std::string(e.what()));
        }
      },
  };
}

}  // namespace troupe::ps
