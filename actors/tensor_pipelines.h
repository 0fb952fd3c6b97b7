// Owns TensorPipelineTrainer: parallel.data replicas x parallel.tensor pipelines of parallel.pipeline stages, every stage of every pipeline one tensor shard (3D parallelism), all actors of one process over the in-process transport.
//
// Replica d's tensor rank t is an ActorPipeline (one stage actor, optimizer-state actor and, with data
// parallelism, gradient-exchange actor per stage) whose stage s is shard t of stage s: its chunks are
// built as that shard (the split layers of models/, the vocabulary-parallel embedding on the first
// stage and head on the last), and the layers' collectives run over the tensor group of (d, s): stage s
// of replica d's T pipelines. Activations and their gradients go shard to shard inside a pipeline:
// after a row-parallel layer's g the activation is the same on every shard of the stage, so shard t of
// stage s + 1 needs only shard t's. Every pipeline runs the same schedule (gpipe, 1f1b, interleaved,
// any micro-batches), so the shards of a stage meet their collectives in the same order.
//
// With parallel.data = D, stage s of pipeline (d, t) reduces its gradients through a GradientSync over
// the data group of (t, s) — shard t of stage s of every replica — with everything data parallelism has
// there (ring/alltoall, ZeRO-1, gradient compression, exact sums in deterministic mode). Clipping and
// train.on_nonfinite use the whole gradients' sums of squares (StageWorker::set_tensor_group), so every
// pipeline takes the same decisions and the run is the single device's (bitwise in deterministic mode).
//
// A step starts every pipeline's replica actor and waits for D x T answers; a failure for good kills every
// group (the peers blocked in a collective stop at once) and the first one is thrown. Restarts
// (fault.max_restarts): a stage or optimizer-state actor of one pipeline — one tensor shard of a stage —
// that dies is restarted one-for-one by that pipeline's replica actor, and the interrupted step is re-run
// by every pipeline (a stage re-run alone would meet its tensor peers out of step): the groups are
// aborted, every pipeline abandons the step and rewinds to its step-boundary copy, the groups are
// reformed, and the step runs again (actors/group_step.h) — bitwise the uninterrupted step in
// deterministic mode. Each pipeline's supervisor counts its own restarts (fault.max_restarts).
// Evaluation and weight files go through replica 0's T pipelines together (their collectives).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "actors/actor_pipeline.h"
#include "net/inproc/inproc_transport.h"
#include "runtime/plan/topology.h"

namespace troupe {

class ActorSystem;

class TensorPipelineTrainer {
 public:
  // Throws troupe::Error(kConfig) for what cannot run (see PipelineDriver). `topology`: the run's
  // (runner.h: plan_run), whose places the supervisors name; without it, derived from `config`.
  explicit TensorPipelineTrainer(const RunConfig& config, const plan::Topology* topology = nullptr);
  ~TensorPipelineTrainer();

  StepStats train_step(std::int64_t step);
  EvalStats evaluate();
  void load_weights(const std::string& path);
  void save_weights(const std::string& path);
  // Checkpoints: whole tensors by name (runtime/checkpoint/training_state.h), gathered over the tensor
  // groups (and, with ZeRO-1, the optimizer state over the replicas), so a state from any layout
  // restores here and this one anywhere; a restore slices.
  TrainingState training_state(std::int64_t steps_done);
  void restore_training_state(const TrainingState& state, const std::string& source);
  void set_trace(TraceRecorder* trace) { pipeline(0, 0).set_trace(trace); }  // replica 0's shard 0

  Dataset& dataset() { return pipeline(0, 0).dataset(); }
  CpuBackend& backend() { return pipeline(0, 0).backend(); }
  int replicas() const { return dp_; }
  int shards() const { return tp_; }
  // Tensor rank t of replica d.
  ActorPipeline& pipeline(int t, int d = 0) { return *pipelines_.at(static_cast<std::size_t>(d * tp_ + t)); }
  // The whole model's parameter count: replicated parameters once, split ones over all shards.
  std::int64_t param_count();
  // Bytes replica 0 sent for its gradients in the last step, over all its shards and stages.
  CommStats last_step_comm();
  // Restarts of every pipeline's actors so far, each with its recovery time; read between steps.
  std::vector<supervision::Restart> restarts() const;

 private:
  // Runs fn(t) for every tensor rank t of replica d at once (their collectives meet), one thread each;
  // rethrows the first failure.
  void on_shards(int d, const std::function<void(int)>& fn);
  void kill_groups();

  RunConfig config_;
  int dp_ = 1, pp_ = 1, tp_ = 1;
  std::vector<std::unique_ptr<net::InprocWorld>> tensor_worlds_;  // [d * P + s]: stage s of replica d's T shards
  std::vector<std::unique_ptr<net::InprocWorld>> data_worlds_;    // [t * P + s] when D > 1: shard t of stage s of every replica
  std::vector<std::unique_ptr<comm::Transport>> tensor_transports_;
  std::shared_ptr<ActorSystem> system_;
  std::vector<std::unique_ptr<ActorPipeline>> pipelines_;  // [d * T + t]
  std::uint64_t round_ = 0;  // abandon-and-re-run rounds so far (every step's)
};

}  // namespace troupe
