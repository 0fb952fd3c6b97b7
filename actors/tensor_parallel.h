// Owns TensorParallelTrainer: parallel.tensor shards of one model, each a Trainer over its slice of the parameters, in one process over the in-process transport, stepped together.
//
// Every shard takes the same batch; the tensor group's collectives (runtime/comm/tensor_parallel_ops.h)
// run inside the layers, so each step runs all shards at once, one thread each. Losses and statistics
// are shard 0's (every shard computes the same). Weight files hold whole tensors.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "models/trainer.h"
#include "net/inproc/inproc_transport.h"

namespace troupe {

class TensorParallelTrainer {
 public:
  explicit TensorParallelTrainer(const RunConfig& config);
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

 private:
  // Runs fn(shard t) for every shard at once, one thread each; rethrows the first failure (a failed
  // shard breaks the group, so its peers fail at once instead of waiting out comm.timeout_s).
  void on_every_shard(const std::function<void(int)>& fn);

  std::unique_ptr<net::InprocWorld> world_;
  std::vector<std::unique_ptr<comm::Transport>> transports_;
  std::vector<std::unique_ptr<Trainer>> shards_;
};

}  // namespace troupe
