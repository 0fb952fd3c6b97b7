// Owns PsTrainer: troupe train's `parallel.gradient_exchange = ps` for the GPT and MLP — parallel.data
// worker actors computing gradients (ps_worker_actor.h), parameters and optimizer state on ps.shards
// parameter-server actors, all in the process's one actor system.
//
// Every parameter is dense here (PsLayout: whole tensors balanced over the shards). Step t, worker w
// (b = train.batch_size / parallel.data samples, its contiguous share of the batch):
//   pull the parameters for step t -> forward/backward on its share -> fold tied gradients -> push them
//   with lr_at(train, optim.lr, t).
//   sync:       every worker scales its loss by 1 / (the whole batch's loss terms), the shards sum the
//               pushes in worker order and take one optimizer step, so the step is the single-device
//               one up to float rounding of the gradient sum (tested within 1e-5 relative). With
//               train.grad_clip, worker 0 runs the clipping round (PsClient::clip): the global norm of
//               the summed gradient, added in parameter order as clip_grad_norm does.
//   async, ssp: each worker scales by its own share and clips its own gradient; each push is a step.
// train_step(t) runs step t on every worker at once and returns when all have pushed (the loss is the
// whole batch's, summed in sample order); in async/ssp mode workers still do not wait for each other's
// updates within a step.
// train.deterministic (sync only): workers push their exact gradient sums (runtime/exact_sum.h) unrounded,
// the tied LM head's separately; the shards add them as integers and round once, then fold — so every
// step, hence every loss and weight, is bitwise the single-device deterministic run.
// parallel.microbatches = m: each worker runs its share as m passes, accumulating gradients, then pushes.
// comm.transport = tcp (the PsLinks constructor): workers 1..D-1 are processes of their own, each
// linked to rank 0's process, which hosts the shard actors and worker 0 (ps_link.h); every step and
// every number is the in-process run's. Rank 0's train_step also collects the other workers' losses.
// Not supported yet (kConfig errors): parallel.pipeline > 1.
#pragma once

#include <cstdint>
#include <functional>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "actors/ps/ps_actor.h"
#include "actors/ps/ps_link_server.h"
#include "actors/ps/ps_worker_actor.h"
#include "models/model.h"
#include "runtime/supervision/fault_plan.h"
#include "runtime/supervision/supervisor.h"
#include "models/trainer.h"
#include "runtime/config/run_config.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/data/dataset.h"
#include "runtime/trace/trace.h"

namespace troupe::ps {

// Seconds a wait on the shards, or on a worker's link, may last: comm.timeout_s, or — when worker processes
// are restarted (comm.transport = tcp, ps.max_restarts > 0) — 4 x comm.timeout_s and at least 60 s, since a
// healthy worker's wait may span another's restart: the heartbeats' limit (comm.timeout_s / 2) to find a
// stalled one, then a new process's start and step. Hung workers are found by their heartbeats and dead ones
// by their links, not by these waits; a run that cannot go on stops them at once (PsCluster::abort).
double ps_wait_s(const RunConfig& config);

class PsTrainer {
 public:
  // Every worker a thread of this process (comm.transport = inproc). Throws troupe::Error (kConfig)
  // naming the setting when the configuration is not one it runs.
  explicit PsTrainer(const RunConfig& config);
  // This process's share of a multi-process run (comm.transport = tcp).
  PsTrainer(const RunConfig& config, PsLinks links);
  ~PsTrainer();

  // Rank 0 (and in-process): the whole batch's step. Worker w > 0 of a tcp run: its own share, whose
  // losses go to rank 0.
  StepStats train_step(std::int64_t step);
  // Steps this process has done: where its next train_step starts (a restarted worker resumes at the
  // first step it had not pushed).
  std::int64_t steps_done() const { return steps_done_; }
  // Worker processes restarted so far (rank 0 of a tcp run).
  int restarts() const;
  // Every restart so far: this process's worker actors (restarted one-for-one under fault.max_restarts
  // when their step failed before its push: "worker w"), then (rank 0 of a tcp run) the worker processes
  // ("ps worker w", under ps.max_restarts).
  std::vector<supervision::Restart> restart_log() const;
  // Evaluates the shards' current parameters (pulled into worker 0's model).
  EvalStats evaluate();
  // Initial weights from a file: only before the first step (the shards are rebuilt from them; a remote
  // worker pulls them and ignores the file).
  void load_weights(const std::string& path);
  void save_weights(const std::string& path);

  // Spans per worker ("worker w": pull, compute, push, clip) and each step's window.
  void set_trace(TraceRecorder* trace);

  int workers() const { return config_.parallel.data; }
  // This process's first worker's backend (its threads: train.threads / parallel.data) and parameters (values as last pulled).
  CpuBackend& backend();
  std::vector<Param*> params_in_order() const;
  std::int64_t param_count() const;
  const PsLayout& layout() const { return *layout_; }
  Dataset& dataset() { return *dataset_; }
  // Optimizer state held by all shards together (each holds its parameters' share).
  std::size_t optimizer_state_bytes();
  // Test hook: ends shard s's actor as a crash would (rank 0 / in-process only).
  void kill_shard(int s);

 private:
  struct Worker;
  PsTrainer(const RunConfig& config, PsLinks links, bool remote);
  void start_cluster();
  // Hands the cluster its shard supervision (sync, fault.max_restarts > 0): snapshots, faults, restarts.
  void supervise_shards();
  // Worker w's spec: its model, backend and (when the shards are here) client; and its actor for workers_[i].
  std::unique_ptr<Worker> make_worker(int w) const;
  caf::actor spawn_worker(std::size_t i);
  // Asks workers_[i]'s actor for `step`; a failure before its push is answered by a one-for-one restart
  // and the step asked again, within fault.max_restarts. Past them, escalated_ holds the error.
  WorkerAnswers drive_worker(std::size_t i, std::int64_t step, const Batch& batch);
  bool restart_worker(std::size_t i, std::int64_t step, const Error& failure);
  // fault.inject's "throw worker W at step S" for this process's worker w: fires once, then is gone.
  bool take_worker_fault(int w, std::int64_t step);
  double clock_s() const;
  // This process's worker `local`'s share of step `step`: pull, compute, push (and the clipping round for worker 0);
  // returns its per-row losses by micro-batch and sets `norm` when it ran the clipping round.
  // before_push gets the losses once computed, before the push (a remote worker's report).
  std::vector<Tensor> run_worker(std::size_t local, std::int64_t step, const Batch& batch, double& norm,
                                 const std::function<void(const std::vector<Tensor>&)>& before_push);


  // Pulls the parameters as of `steps_done_` into worker 0's model.
  void refresh_worker0();

  RunConfig config_;
  std::unique_ptr<Dataset> dataset_;
  std::unique_ptr<Model> initial_;  // initial values (seeded, or loaded) the shards start from
  std::shared_ptr<const PsLayout> layout_;
  std::shared_ptr<ActorSystem> system_;  // the process's: shard and worker actors
  // The job's supervisor (job -> shards, workers), over the run's Topology: names a dead shard's place.
  std::unique_ptr<supervision::Supervisor> supervisor_;
  std::unique_ptr<PsCluster> cluster_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<caf::actor> worker_actors_;  // worker_actors_[i] runs workers_[i]'s steps (ps_worker_actor.h)
  std::int64_t steps_done_ = 0;
  TraceRecorder* trace_ = nullptr;
  std::vector<int> tracks_;

  bool remote_ = false;  // a tcp run
  PsLinks links_;
  std::unique_ptr<PsLinkServer> server_;  // rank 0 of a tcp run, from the first step on

  std::mutex restart_mu_;  // the supervisor and escalated_, for the threads driving the workers
  std::optional<Error> escalated_;
  std::vector<supervision::FaultClause> worker_faults_;  // fault.inject's worker clauses not fired yet
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace troupe::ps
