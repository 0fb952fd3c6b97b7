// The parameter-server worker actor: a worker's step on request, its failure as the answer.
#include "actors/ps/ps_worker_actor.h"

#include "actors/actor_system.h"

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

WorkerAnswers ask_workers(caf::actor_system& system, const std::vector<caf::actor>& workers, std::int64_t step,
                          const Batch& batch) {
  WorkerAnswers out;
  out.steps.resize(workers.size());
  out.failures.resize(workers.size());
  caf::scoped_actor self(system);
  std::vector<decltype(self->request(workers[0], caf::infinite, troupe::proto::step_atom::value, step, batch))> pending;
  for (const caf::actor& w : workers)
    pending.push_back(self->request(w, caf::infinite, troupe::proto::step_atom::value, step, batch));
  for (std::size_t i = 0; i < workers.size(); ++i)
    pending[i].receive([&](WorkerStep& done) { out.steps[i] = std::move(done); },
                       [&](caf::error& e) {
                         const caf::message& ctx = e.context();
                         if (ctx.size() == 2 && ctx.match_element<std::int32_t>(0) && ctx.match_element<std::string>(1))
                           out.failures[i] = Error(static_cast<ErrorKind>(ctx.get_as<std::int32_t>(0)), ctx.get_as<std::string>(1));
                         else
                           out.failures[i] = Error(ErrorKind::kInternal, "ps worker actor " + std::to_string(i) +
                                                                             " ended: " + system.render(e));
                       });
  return out;
}

std::optional<Error> run_worker_actors(ActorSystem& system, std::vector<WorkerJob> jobs, std::int64_t step,
                                       const Batch& batch) {
  std::vector<caf::actor> workers;
  for (WorkerJob& job : jobs) workers.push_back(system.get().spawn<caf::detached>(ps_worker_actor, std::move(job)));
  WorkerAnswers answers = ask_workers(system.get(), workers, step, batch);
  caf::scoped_actor self(system.get());
  for (const caf::actor& w : workers) self->send_exit(w, caf::exit_reason::user_shutdown);
  self->wait_for(workers);
  for (auto& f : answers.failures)
    if (f) return f;
  return std::nullopt;
}

}  // namespace troupe::ps
