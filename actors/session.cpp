// Session: a job from the runner, stepped by the application; exceptions become Expected.
#include "actors/session.h"

#include "actors/runner.h"

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

Session::Session(const RunConfig& config) : config_(config), job_(launch(config)) {}

Session::~Session() = default;

Expected<std::unique_ptr<Session>> Session::create(const RunConfig& config) {
  return guarded([&] { return std::unique_ptr<Session>(new Session(config)); });
}

Expected<StepStats> Session::step() {
  if (next_step_ >= config_.train.steps)
    return Error(ErrorKind::kUsage, "all " + std::to_string(config_.train.steps) + " steps (train.steps) are done");
  return guarded([&] {
    StepStats s = job_->train_step(next_step_);
    ++next_step_;
    return s;
  });
}

Expected<EvalStats> Session::evaluate() {
  return guarded([&] { return job_->evaluate(); });
}

Expected<bool> Session::save_weights(const std::string& path) {
  return guarded([&] {
    job_->save_weights(path);
    return true;
  });
}

Expected<bool> Session::load_weights(const std::string& path) {
  return guarded([&] {
    job_->load_weights(path);
    return true;
  });
}

std::int64_t Session::parameter_count() const { return job_->parameter_count(); }

}  // namespace troupe
