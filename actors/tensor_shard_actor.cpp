// The tensor-shard actor: a shard's step, evaluation and weight files on request, its failure as the answer.
#include "actors/tensor_shard_actor.h"

#include <exception>

namespace troupe {

namespace {

// Runs fn on the shard; a throw breaks the shard's groups and becomes the request's error.
template <class F>
auto answer(caf::stateful_actor<TensorShardActorState>* self, F&& fn) -> caf::result<decltype(fn(*self->state.shard))> {
  try {
    return fn(*self->state.shard);
  } catch (const Error& e) {
    self->state.on_failure();
    return caf::make_error(caf::sec::runtime_error, static_cast<std::int32_t>(e.kind()), std::string(e.what()));
  } catch (const std::exception& e) {
    self->state.on_failure();
    return caf::make_error(caf::sec::runtime_error, static_cast<std::int32_t>(ErrorKind::kInternal),
                           std::string(e.what()));
  }
}

}  // namespace

caf::behavior tensor_shard_actor(caf::stateful_actor<TensorShardActorState>* self, Trainer* shard,
                                 std::function<void()> on_failure) {
  self->state.shard = shard;
  self->state.on_failure = std::move(on_failure);
  return {
      [=](proto::step_atom, std::int64_t step) { return answer(self, [&](Trainer& t) { return t.train_step(step); }); },
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
