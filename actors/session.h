// Owns Session: troupe embedded in an application — build from a RunConfig, train step by step, read
// metrics, evaluate, save weights, shut down by destruction. No globals, no exit(); every failure is
// returned to the caller as a troupe::Error inside an Expected.
//
//   troupe::RunConfig config;                      // or troupe::load_config(path, {"train.steps=100"})
//   config.parallel.pipeline = 2;
//   auto session = troupe::Session::create(config);
//   if (!session) { std::cerr << session.error().what(); return 1; }
//   while (auto stats = (*session)->step()) { ... stats->loss ... if (done) break; }
//
// Every run starts in the runner (actors/runner.h), as `troupe train`'s do: the single-device reference
// trainer, pipelines of stage actors, data-parallel replicas (with ZeRO-1 or gradient compression) and
// parameter servers, with the same losses as the command line (bitwise with train.deterministic).
// Ranks run as threads of the application: comm.transport = tcp, whose ranks are copies of the troupe
// program, is refused with a config error.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "models/step_stats.h"
#include "runtime/config/run_config.h"
#include "runtime/error.h"

namespace troupe {

class Job;

// A value or the troupe::Error that prevented it.
template <typename T>
class Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}
  Expected(Error error) : v_(std::move(error)) {}
  explicit operator bool() const { return v_.index() == 0; }
  T& operator*() { return std::get<0>(v_); }
  T* operator->() { return &std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

class Session {
 public:
  // Validates the configuration and builds the model, data and (for pipelines) the stage actors.
  static Expected<std::unique_ptr<Session>> create(const RunConfig& config);
  ~Session();

  // Runs the next training step; an Error when the configured steps are done or the step failed.
  Expected<StepStats> step();
  Expected<EvalStats> evaluate();
  Expected<bool> save_weights(const std::string& path);
  Expected<bool> load_weights(const std::string& path);

  std::int64_t steps_done() const { return next_step_; }
  const RunConfig& config() const { return config_; }
  std::int64_t parameter_count() const;

 private:
  explicit Session(const RunConfig& config);
  RunConfig config_;
  std::unique_ptr<Job> job_;
  std::int64_t next_step_ = 0;
};

}  // namespace troupe
