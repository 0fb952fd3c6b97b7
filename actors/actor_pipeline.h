// Owns ActorPipeline: the pipeline run by CAF actors, one detached actor (thread) per stage, stages
// exchanging activations and gradients directly, each with its optimizer-state actor (and gradient-
// exchange actor under data parallelism), under one replica actor that supervises them and coordinates
// each step: it only starts steps, combines gradient norms and triggers the optimizer step. Same
// results as PipelineDriver (and the single device).
#pragma once

#include <memory>
#include <utility>

#include "actors/state/pipeline_driver.h"
#include "runtime/supervision/supervisor.h"

namespace caf {
class actor_system;
class actor_system_config;
class scoped_actor;
class actor;
class error;
}  // namespace caf

namespace troupe {

class ActorSystem;

class ActorPipeline {
 public:
  // The stage actors are spawned into `system` (shared with the process's other actors); without one,
  // the pipeline makes its own. `topology`: the run's, from the runner (plan_run), whose places the
  // supervisor names; without it (a pipeline built from options alone, as tests do) it is derived from
  // `options` with every stage on cpu:0 of this process.
  ActorPipeline(const RunConfig& config, PipelineOptions options, std::shared_ptr<ActorSystem> system = nullptr,
                const plan::Topology* topology = nullptr);
  ~ActorPipeline();

  // Spawns a gradient-exchange actor (exchange_actor.h) for every stage whose GradientSync can reduce
  // buckets during backward; call once, after the syncs are attached (DataParallelTrainer does).
  void start_gradient_exchanges();

  // Test hook: ends stage s's gradient-exchange actor as a crash would (exit reason kill) and waits
  // until it has ended.
  void end_gradient_exchange(int stage);

  // One training step, coordinated by the replica actor (replica_actor.h); a failed child is thrown as
  // its supervisor's report (troupe::Error of the child's own kind).
  StepStats train_step(std::int64_t step);
  // The replica actor: (step_atom, step) to it is one step without waiting here (DataParallelTrainer
  // steps every replica of the process from one thread so).
  const caf::actor& coordinator() const;
  // Between steps the actors are idle: evaluation and weight files go through the stage workers.
  EvalStats evaluate() { return driver_.evaluate(); }
  void load_weights(const std::string& path) { driver_.load_weights(path); }
  void save_weights(const std::string& path) const { driver_.save_weights(path); }
  std::string describe_partition() const { return driver_.describe_partition(); }
  std::vector<Param*> params_in_order() const { return driver_.params_in_order(); }
  Dataset& dataset() { return driver_.dataset(); }
  CpuBackend& backend() { return driver_.backend(); }
  // Records every stage's spans (track "stage s") and each step's window into `trace`.
  void set_trace(TraceRecorder* trace);
  // Restarts of this replica's actors so far (fault.max_restarts), each with its recovery time; read
  // between steps.
  const std::vector<supervision::Restart>& restarts() const { return supervisor_->intensity().restarts(); }
  // Tells `observer` of each restart of this replica's actors as its supervisor records it and as its times
  // become known, and `escalated` of its escalation, on the replica actor's thread (a rank process forwards
  // them to rank 0 so); before the first step.
  void observe_restarts(supervision::RestartIntensity::Observer observer,
                        supervision::RestartIntensity::EscalationObserver escalated) {
    supervisor_->intensity().observe(std::move(observer));
    supervisor_->intensity().observe_escalation(std::move(escalated));
  }
  // The stage's state machine; touch it only between steps (the actors are idle then).
  StageWorker& stage(int s) { return driver_.stage(s); }
  // The stage workers' owner (partition, schedule, evaluation); the actors run its stages.
  PipelineDriver& driver() { return driver_; }
  const PipelineDriver& driver() const { return driver_; }

 private:
  PipelineDriver driver_;
  // This replica's supervisor (its children: the stage actors), over the replica's Topology.
  std::unique_ptr<supervision::Supervisor> supervisor_;
  TraceRecorder* trace_ = nullptr;  // builds the stages; its workers are what the actors run
  struct Actors;
  std::unique_ptr<Actors> actors_;
};

}  // namespace troupe
