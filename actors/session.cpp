// Session: chooses the reference trainer or the actor pipeline, and turns exceptions into Expected.
#include "actors/session.h"

#include "actors/actor_pipeline.h"
#include "runtime/config/config_loader.h"
#include "runtime/placement.h"

namespace troupe {

namespace {
// Runs `body`, returning its value or the Error it raised (internal faults become kInternal errors).
template <typename F>
auto guarded(F&& body) -> Expected<decltype(body())> {
  try {
    return body();
  } catch (const Error& e) {
    return e;
  } catch (const std::exception& e) {
    return Error(ErrorKind::kInternal, e.what());
  }
}
}  // namespace

Session::Session(const RunConfig& config) : config_(config) {
  validate(config);
  // Devices first, as `troupe train` does; the embedding API trains on the CPU only so far.
  if (placement_for_run(config).any_cuda())
    throw Error(ErrorKind::kConfig, "train.device = " + config.train.device +
                                        ": Session trains on the CPU only so far (troupe train runs one GPU); use "
                                        "train.device = cpu");
  const ParallelConfig& par = config.parallel;
  if (par.pipeline > 1 || par.microbatches > 1)
    pipeline_ = std::make_unique<ActorPipeline>(
        config, PipelineOptions{par.pipeline, par.virtual_stages, par.microbatches, par.schedule, par.boundaries, false, par.credits});
  else
    trainer_ = std::make_unique<Trainer>(config);
}

Session::~Session() = default;

Expected<std::unique_ptr<Session>> Session::create(const RunConfig& config) {
  return guarded([&] { return std::unique_ptr<Session>(new Session(config)); });
}

Expected<StepStats> Session::step() {
  if (next_step_ >= config_.train.steps)
    return Error(ErrorKind::kUsage, "all " + std::to_string(config_.train.steps) + " steps (train.steps) are done");
  return guarded([&] {
    StepStats s = pipeline_ ? pipeline_->train_step(next_step_) : trainer_->train_step(next_step_);
    ++next_step_;
    return s;
  });
}

Expected<EvalStats> Session::evaluate() {
  return guarded([&] { return pipeline_ ? pipeline_->evaluate() : trainer_->evaluate(); });
}

Expected<bool> Session::save_weights(const std::string& path) {
  return guarded([&] {
    pipeline_ ? pipeline_->save_weights(path) : trainer_->save_weights(path);
    return true;
  });
}

Expected<bool> Session::load_weights(const std::string& path) {
  return guarded([&] {
    pipeline_ ? pipeline_->load_weights(path) : trainer_->load_weights(path);
    return true;
  });
}

std::int64_t Session::parameter_count() const {
  if (trainer_) return trainer_->model().params().numel();
  std::int64_t n = 0;
  for (Param* p : pipeline_->params_in_order()) n += p->value.numel();
  return n;
}

}  // namespace troupe
