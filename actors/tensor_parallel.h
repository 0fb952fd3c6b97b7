// Owns TensorParallelTrainer: parallel.tensor shards of one model, each a Trainer over its slice of the parameters run by its own tensor-shard actor, in one process over the in-process transport, stepped together.
//
// Every shard takes the same batch; the tensor group's collectives (runtime/comm/tensor_parallel_ops.h)
// run inside the layers, so a step asks every shard actor at once (actors/tensor_shard_actor.h) and
// waits for all answers. Losses and statistics are shard 0's (every shard computes the same). Weight
// files hold whole tensors. A shard actor that dies is named by the job's supervisor with its place.
#pragma once

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
  void set_trace(TraceRecorder* trace) { shards_.at(0)->set_trace(trace); }  // shard 0's spans

  Dataset& dataset() { return shards_.at(0)->dataset(); }
  CpuBackend& backend() { return shards_.at(0)->backend(); }
  int shards() const { return static_cast<int>(shards_.size()); }
  Trainer& shard(int t) { return *shards_.at(static_cast<std::size_t>(t)); }
  // The whole model's parameter count: replicated parameters once, split ones over all shards.
  std::int64_t param_count() const;

  // Test hook: ends shard t's actor as a crash would (exit reason kill) and waits until it has ended.
  void kill_shard(int t);

 private:
  // Sends `request` to every shard actor at once and waits for all answers; answer(t, result) takes
  // shard t's. A failure throws: the supervisor's report when a shard actor died (the cause of its
  // peers' failures), else the first failing shard's own troupe::Error.
  template <class R, class... Ts>
  std::vector<R> ask_every_shard(std::int64_t step, Ts... request);
  // The supervision tree's name of shard t: "replica 0/stage 0/tensor t".
  std::string shard_name(int t) const;

  std::unique_ptr<net::InprocWorld> world_;
  std::vector<std::unique_ptr<comm::Transport>> transports_;
  std::vector<std::unique_ptr<Trainer>> shards_;
  std::shared_ptr<ActorSystem> system_;
  std::unique_ptr<supervision::Supervisor> supervisor_;
  std::vector<caf::actor> actors_;  // actors_[t] runs shards_[t]
  struct Deaths {                   // written by a dying actor's thread (attach_functor)
    std::mutex mu;
    std::optional<std::pair<int, std::string>> first;  // shard, exit reason
    bool stopping = false;                               // the trainer stops its actors itself: not a death
  };
  std::shared_ptr<Deaths> deaths_;
};

}  // namespace troupe
