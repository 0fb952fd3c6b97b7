// TensorParallelTrainer: one Trainer per shard over an InprocWorld, every step on one thread per shard.
#include "actors/tensor_parallel.h"

#include <chrono>
#include <exception>
#include <thread>

namespace troupe {

TensorParallelTrainer::TensorParallelTrainer(const RunConfig& config) {
  const int tp = config.parallel.tensor;
  world_ = std::make_unique<net::InprocWorld>(
      tp, std::chrono::milliseconds(static_cast<long long>(config.comm.timeout_s * 1000.0)));
  for (int t = 0; t < tp; ++t) {
    transports_.push_back(world_->transport(t));
    shards_.push_back(std::make_unique<Trainer>(config, comm::TensorGroup{transports_.back().get()}));
  }
}

TensorParallelTrainer::~TensorParallelTrainer() = default;

void TensorParallelTrainer::on_every_shard(const std::function<void(int)>& fn) {
  std::vector<std::exception_ptr> errors(shards_.size());
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < shards_.size(); ++t)
    threads.emplace_back([&, t] {
      try {
        fn(static_cast<int>(t));
      } catch (...) {
        errors[t] = std::current_exception();
        world_->kill(static_cast<int>(t));
      }
    });
  for (auto& th : threads) th.join();
  for (auto& e : errors)  // the first shard that failed for its own reason, not for a dead peer
    if (e) std::rethrow_exception(e);
}

StepStats TensorParallelTrainer::train_step(std::int64_t step) {
  std::vector<StepStats> stats(shards_.size());
  on_every_shard([&](int t) { stats[static_cast<std::size_t>(t)] = shards_[static_cast<std::size_t>(t)]->train_step(step); });
  return stats.at(0);
}

EvalStats TensorParallelTrainer::evaluate() {
  std::vector<EvalStats> stats(shards_.size());
  on_every_shard([&](int t) { stats[static_cast<std::size_t>(t)] = shards_[static_cast<std::size_t>(t)]->evaluate(); });
  return stats.at(0);
}

void TensorParallelTrainer::load_weights(const std::string& path) {
  on_every_shard([&](int t) { shards_[static_cast<std::size_t>(t)]->load_weights(path); });
}

void TensorParallelTrainer::save_weights(const std::string& path) {
  on_every_shard([&](int t) { shards_[static_cast<std::size_t>(t)]->save_weights(path); });
}

std::int64_t TensorParallelTrainer::param_count() const {
  std::int64_t n = 0;
  for (std::size_t t = 0; t < shards_.size(); ++t)
    for (const Param* p : shards_[t]->model().params().all())
      if (t == 0 || p->split.split()) n += p->value.numel();
  return n;
}

}  // namespace troupe
