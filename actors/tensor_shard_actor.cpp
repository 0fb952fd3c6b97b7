// The tensor-shard actor: a shard's step, evaluation and weight files on request, its failure as the answer.
#include "actors/tensor_shard_actor.h"

#include <chrono>
#include <exception>

#include "actors/message_poll.h"
#include "runtime/comm/group_aborted.h"

namespace troupe {

namespace {

// Runs fn on the shard and answers at once; a throw breaks the shard's groups and becomes the
// request's error. Then it polls for the next request for comm.poll_us (message_poll.h): the requester
// often sends it within microseconds (the next step, or a benchmark's next collective), and a sleeping
// detached actor costs a wake-up per request.
template <class F>
auto answer(caf::stateful_actor<TensorShardActorState>* self, F&& fn) {
  using R = decltype(fn(*self->state.shard));
  auto promise = self->make_response_promise<R>();
  // The shard's own failure: its peers are freed, the asker told; a restartable actor then ends with it.
  auto failed = [&](std::int32_t kind, const std::string& what) {
    self->state.on_failure();
    caf::error e = caf::make_error(caf::sec::runtime_error, kind, what);
    promise.deliver(e);
    if (self->state.restartable && failure_restarts(static_cast<ErrorKind>(kind))) self->quit(std::move(e));
  };
  try {
    promise.deliver(fn(*self->state.shard));
  } catch (const comm::GroupAborted& e) {
    promise.deliver(caf::make_error(caf::sec::runtime_error, kShardStepAbandoned, std::string(e.what())));
  } catch (const Error& e) {
    failed(static_cast<std::int32_t>(e.kind()), e.what());
  } catch (const std::exception& e) {
    failed(static_cast<std::int32_t>(ErrorKind::kInternal), e.what());
  }
  poll_for_message(self, std::chrono::microseconds(self->state.shard->config().comm.poll_us));
  return promise;
}

}  // namespace

caf::behavior tensor_shard_actor(caf::stateful_actor<TensorShardActorState>* self, Trainer* shard,
                                 std::function<void()> on_failure, bool restartable) {
  self->state.shard = shard;
  self->state.on_failure = std::move(on_failure);
  self->state.restartable = restartable;
  return {
      [=](proto::step_atom, std::int64_t step) { return answer(self, [&](Trainer& t) { return t.train_step(step); }); },
      [=](proto::step_atom, std::int64_t step, bool keep_boundary, bool rewind) {
        return answer(self, [&](Trainer& t) {
          if (rewind) t.rewind(step);
          else if (keep_boundary) t.keep_boundary(step);
          return t.train_step(step);
        });
      },
      [=](proto::eval_atom) { return answer(self, [](Trainer& t) { return t.evaluate(); }); },
      [=](proto::load_atom, const std::string& path) {
        return answer(self, [&](Trainer& t) {
          t.load_weights(path);
          return true;
        });
      },
      [=](proto::save_atom, const std::string& path) {
        return answer(self, [&](Trainer& t) {
          t.save_weights(path);
          return true;
        });
      },
      [=](proto::state_atom, std::int64_t done) {
        return answer(self, [&](Trainer& t) { return t.training_state(done); });
      },
      [=](proto::restore_atom, const TrainingState& state, const std::string& source) {
        return answer(self, [&](Trainer& t) {
          t.restore_training_state(state, source);
          return true;
        });
      },
  };
}

}  // namespace troupe
