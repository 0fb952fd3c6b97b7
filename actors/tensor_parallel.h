// Owns TensorParallelTrainer: parallel.data replicas x parallel.tensor shards of one model, each shard a Trainer over its slice of the parameters run by its own tensor-shard actor, in one process over the in-process transport, stepped together.
//
// The shards of a replica take the same rows of the batch; the tensor group's collectives
// (runtime/comm/tensor_parallel_ops.h) run inside the layers, so a step asks every shard actor at once
// (actors/tensor_shard_actor.h) and waits for all answers. With parallel.data = D each tensor rank t
// also has a data-parallel group (shard t of every replica), over which its Trainer averages its
// gradients: D x T groups' worth of collectives, each over its own InprocWorld. Losses and statistics
// are shard 0's of replica 0 (every shard reports the same). Weight files hold whole tensors. A shard
// actor that dies is named by the job's supervisor with its place.
//
// Restarts (fault.max_restarts > 0): every shard keeps a step-boundary copy of its state as a step
// begins (Trainer::keep_boundary: parameters, buffers, optimizer state; the batch and the learning rate
// are functions of the step). A shard actor that dies — killed, or its step threw — is restarted
// one-for-one: its groups are aborted at once (comm::GroupAborted: its peers abandon the step instead of
// waiting for it, and stay alive), a new actor is spawned on the same Trainer, the groups are reformed,
// and every shard of every replica rewinds to its copy and re-runs the step — bitwise the uninterrupted
// step in deterministic mode. The supervisor's restart intensity (fault.max_restarts within
// fault.restart_window_s, over all shards) bounds it: past it, the step fails with the escalation that
// names the actor, its place and each restart before.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor.hpp>

#include "models/trainer.h"
#include "net/inproc/inproc_transport.h"
#include "runtime/plan/topology.h"
#include "runtime/supervision/fault_plan.h"
#include "runtime/supervision/supervisor.h"

namespace troupe {

class ActorSystem;

class TensorParallelTrainer {
 public:
  // system: the process's actor system (a new one when null); topology: the run's plan (made from
  // `config` when null), for the supervisor to name a dead shard's place.
  explicit TensorParallelTrainer(const RunConfig& config, std::shared_ptr<ActorSystem> system = nullptr,
                                 const plan::Topology* topology = nullptr);
  ~TensorParallelTrainer();

  StepStats train_step(std::int64_t step);
  EvalStats evaluate();
  void load_weights(const std::string& path);
  void save_weights(const std::string& path);
  // Checkpoints: whole tensors by name (replica 0's shards gather them), so a state from any
  // parallel.tensor and parallel.data restores here, and this one anywhere (training_state.h).
  TrainingState training_state(std::int64_t steps_done);
  void restore_training_state(const TrainingState& state, const std::string& source);
  void set_trace(TraceRecorder* trace) { shards_.at(0)->set_trace(trace); }  // shard 0's spans

  Dataset& dataset() { return shards_.at(0)->dataset(); }
  CpuBackend& backend() { return shards_.at(0)->backend(); }
  int shards() const { return tp_; }  // per replica
  int replicas() const { return dp_; }
  // Shard t of replica d.
  Trainer& shard(int t, int d = 0) { return *shards_.at(static_cast<std::size_t>(d * tp_ + t)); }
  // The whole model's parameter count: replicated parameters once, split ones over all shards.
  std::int64_t param_count() const;

  // Test hook: ends shard t of replica d's actor as a crash would (exit reason kill) and waits until it
  // has ended.
  void kill_shard(int t, int d = 0);
  // Restarts of shard actors so far (fault.max_restarts), each with its recovery time; between steps.
  const std::vector<supervision::Restart>& restarts() const { return supervisor_->intensity().restarts(); }

 private:
  // Spawns (or, after its death, spawns again) the actor of shards_[i].
  caf::actor spawn_shard(std::size_t i);
  // One attempt at step `step` on every shard (rewind: a re-run): fault.inject's clauses for this
  // attempt fire first. Returns the answers of shard 0 and, on failure, the failure and the shards that
  // failed on their own (not those that abandoned the step).
  struct Attempt {
    StepStats stats;
    std::optional<Error> failure;
    std::optional<Error> final_failure;      // a shard's own failure that a re-run would meet again
    std::vector<std::size_t> failed;         // shards whose actor died of its failure, or was dead
    std::vector<std::string> causes;         // their own words
  };
  Attempt attempt_step(std::int64_t step, bool rewind);
  // Restarts the failed shards of an attempt (or escalates: throws), then reforms the groups.
  void restart_shards(std::int64_t step, const Attempt& attempt);
  double clock_s() const;
  // Sends `request` to the first `count` shard actors (replica 0's: tp_; all: dp_ x tp_) at once and
  // waits for all answers, in actor order. A failure throws: the supervisor's report when a shard actor
  // died (the cause of its peers' failures), else the first failing shard's own troupe::Error.
  template <class R, class... Ts>
  std::vector<R> ask_shards(std::size_t count, std::int64_t step, Ts... request);
  // The supervision tree's name of actor i (replica i / T, tensor i % T): "replica d/stage 0/tensor t".
  std::string shard_name(std::size_t i) const;
  // Breaks every group actor i belongs to (its peers' collectives fail at once); with restarts, aborts
  // every group instead (the step is re-run, the groups reformed).
  void break_groups(std::size_t i);

  int dp_ = 1, tp_ = 1;
  std::vector<std::unique_ptr<net::InprocWorld>> tensor_worlds_;  // one per replica: its T shards
  std::vector<std::unique_ptr<net::InprocWorld>> data_worlds_;    // one per tensor rank when D > 1: its D shards
  std::vector<std::unique_ptr<comm::Transport>> transports_;
  std::vector<std::unique_ptr<Trainer>> shards_;                  // shards_[d * T + t]
  std::shared_ptr<ActorSystem> system_;
  std::unique_ptr<supervision::Supervisor> supervisor_;
  std::vector<caf::actor> actors_;  // actors_[i] runs shards_[i]
  struct Deaths {                   // written by a dying actor's thread (attach_functor)
    std::mutex mu;
    std::optional<std::pair<std::size_t, std::string>> first;  // actor, exit reason
    // Every death since the last restart: actor -> (cause, when on clock_s()).
    std::map<std::size_t, std::pair<std::string, double>> all;
    std::condition_variable recorded;                    // a death was added to `all`
    bool stopping = false;                               // the trainer stops its actors itself: not a death
  };
  std::shared_ptr<Deaths> deaths_;
  bool restarts_on_ = false;                          // fault.max_restarts > 0
  std::string checkpoint_dir_;                        // for the escalation's advice
  std::vector<supervision::FaultClause> faults_;      // fault.inject's shard clauses, not fired yet
  std::chrono::steady_clock::time_point born_ = std::chrono::steady_clock::now();  // the intensity's clock
};

}  // namespace troupe
