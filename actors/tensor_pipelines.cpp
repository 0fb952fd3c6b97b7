// TensorPipelineTrainer: D x T actor pipelines wired by tensor groups per (replica, stage) and data groups per (shard, stage), stepped together.
#include "actors/tensor_pipelines.h"

#include <algorithm>
#include <exception>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "actors/actor_system.h"
#include "actors/data_parallel.h"
#include "actors/group_step.h"
#include "actors/protocol.h"
#include "actors/replica_actor.h"
#include "models/model.h"

namespace troupe {

TensorPipelineTrainer::TensorPipelineTrainer(const RunConfig& config, const plan::Topology* topology)
    : config_(config), dp_(config.parallel.data), pp_(config.parallel.pipeline), tp_(config.parallel.tensor) {
  const std::chrono::milliseconds timeout(static_cast<long long>(config.comm.timeout_s * 1000.0));
  for (int d = 0; d < dp_; ++d)
    for (int s = 0; s < pp_; ++s) tensor_worlds_.push_back(std::make_unique<net::InprocWorld>(tp_, timeout));
  if (dp_ > 1)
    for (int t = 0; t < tp_; ++t)
      for (int s = 0; s < pp_; ++s) data_worlds_.push_back(std::make_unique<net::InprocWorld>(dp_, timeout));
  // The machine's threads are shared by the D x T pipelines (results do not depend on thread counts).
  RunConfig per = config;
  const int threads = config.train.threads > 0 ? config.train.threads
                                               : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  per.train.threads = std::max(1, threads / (dp_ * tp_));
  const plan::Topology plan =
      topology ? *topology
               : plan::make_topology(config, layer_info(make_layer_specs(config.model, config.train.seed)),
                                     std::vector<Device>(static_cast<std::size_t>(pp_), Device::cpu()));
  system_ = std::make_shared<ActorSystem>();
  for (int d = 0; d < dp_; ++d)
    for (int t = 0; t < tp_; ++t) {
      PipelineOptions options = pipeline_options(config, d);
      // A stage re-run alone would meet its tensor peers out of step: every pipeline re-runs together.
      options.group_restarts = true;
      options.member = d * tp_ + t;
      for (int s = 0; s < pp_; ++s) {
        tensor_transports_.push_back(tensor_worlds_[static_cast<std::size_t>(d * pp_ + s)]->transport(t));
        options.tensor_groups.push_back(
            comm::TensorGroup{tensor_transports_.back().get(), config.parallel.sequence_parallel});
      }
      pipelines_.push_back(std::make_unique<ActorPipeline>(per, options, system_, &plan));
      if (dp_ == 1) continue;
      PipelineDriver& driver = pipelines_.back()->driver();
      for (int s = 0; s < pp_; ++s) {
        net::InprocWorld& world = *data_worlds_[static_cast<std::size_t>(t * pp_ + s)];
        GradientSyncOptions sync = gradient_sync_options(config);
        sync.local_group = world.local_group();
        driver.stage(s).attach_gradient_sync(std::make_unique<GradientSync>(world.transport(d), sync));
      }
      pipelines_.back()->start_gradient_exchanges();
    }
}

TensorPipelineTrainer::~TensorPipelineTrainer() {
  pipelines_.clear();  // their actors first: they use the transports
}

void TensorPipelineTrainer::kill_groups() {
  for (auto& w : tensor_worlds_)
    for (int t = 0; t < tp_; ++t) w->kill(t);
  for (auto& w : data_worlds_)
    for (int d = 0; d < dp_; ++d) w->kill(d);
}

// Every pipeline's replica actor coordinates its own step; this thread starts them and collects. A
// pipeline that restarted one of its actors mid-step has every pipeline re-run the step (group_step.h):
// its tensor peers wait for it in every layer's collectives, and its data peers in the gradient exchange.
StepStats TensorPipelineTrainer::train_step(std::int64_t step) {
  caf::scoped_actor self{system_->get()};
  std::vector<caf::actor> coordinators;
  for (auto& p : pipelines_) {
    coordinators.push_back(p->coordinator());
    self->send(p->coordinator(), proto::step_atom::value, step);
  }
  std::vector<StepStats> stats(pipelines_.size());
  std::optional<Error> failure;
  GroupStepHooks hooks;
  hooks.abort = [&] {
    for (auto& w : tensor_worlds_) w->abort();
    for (auto& w : data_worlds_) w->abort();
  };
  hooks.reform = [&] {
    for (auto& w : tensor_worlds_) w->reform();
    for (auto& w : data_worlds_) w->reform();
    for (auto& p : pipelines_)
      for (int s = 0; s < pp_; ++s)
        if (GradientSync* g = p->stage(s).gradient_sync()) g->reform();
  };
  hooks.failed = [&](int, Error e) {
    if (failure) return;
    // The first failure is the cause; its peers, blocked in collectives with it, stop at once.
    failure = std::move(e);
    kill_groups();
  };
  hooks.name = [&](int m) { return fmt::format("the pipeline of tensor shard {} of replica {}", m % tp_, m / tp_); };
  step_group(self, step, coordinators, stats, hooks, round_,
             std::chrono::milliseconds(static_cast<long long>(config_.comm.timeout_s * 1000.0)) + std::chrono::seconds(1));
  if (failure) throw *failure;
  return stats[0];  // every shard of every replica reports the same
}

std::vector<supervision::Restart> TensorPipelineTrainer::restarts() const {
  std::vector<supervision::Restart> all;
  for (const auto& p : pipelines_) all.insert(all.end(), p->restarts().begin(), p->restarts().end());
  return all;
}

void TensorPipelineTrainer::on_shards(int d, const std::function<void(int)>& fn) {
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(tp_));
  std::vector<std::thread> threads;
  for (int t = 0; t < tp_; ++t)
    threads.emplace_back([&, t] {
      try {
        fn(t);
      } catch (...) {
        errors[static_cast<std::size_t>(t)] = std::current_exception();
        // Its peers may wait in a collective with it: free them.
        for (int s = 0; s < pp_; ++s) tensor_worlds_[static_cast<std::size_t>(d * pp_ + s)]->kill(t);
      }
    });
  for (auto& th : threads) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

EvalStats TensorPipelineTrainer::evaluate() {
  std::vector<EvalStats> out(static_cast<std::size_t>(tp_));
  on_shards(0, [&](int t) { out[static_cast<std::size_t>(t)] = pipeline(t).evaluate(); });
  return out[0];
}

void TensorPipelineTrainer::load_weights(const std::string& path) {
  for (auto& p : pipelines_) p->load_weights(path);  // each keeps its slices: no collective
}

void TensorPipelineTrainer::save_weights(const std::string& path) {
  on_shards(0, [&](int t) { pipeline(t).save_weights(path); });  // gathered; shard 0 writes
}

TrainingState TensorPipelineTrainer::training_state(std::int64_t steps_done) {
  // Every shard gathers the whole state; replica 0's shard 0's is kept. Replicas hold the same parameters,
  // and the same optimizer state unless ZeRO-1 spreads it over them (each entry on its owner alone).
  std::vector<TrainingState> states(static_cast<std::size_t>(tp_));
  for (TrainingState& s : states) s.step = steps_done;
  on_shards(0, [&](int t) { pipeline(t).driver().gather_params_into(states[static_cast<std::size_t>(t)]); });
  for (int d = 0; d < (config_.parallel.zero ? dp_ : 1); ++d)
    on_shards(d, [&](int t) {
      pipeline(t, d).driver().gather_optimizer_state_into(states[static_cast<std::size_t>(t)].optimizer, d == 0);
    });
  return states[0];
}

void TensorPipelineTrainer::restore_training_state(const TrainingState& state, const std::string& source) {
  for (auto& p : pipelines_) p->driver().restore_training_state(state, source);  // slices: no collective
}

std::int64_t TensorPipelineTrainer::param_count() {
  std::int64_t n = 0;
  for (int t = 0; t < tp_; ++t)
    for (const Param* p : pipeline(t).params_in_order())
      if (t == 0 || p->split.split()) n += p->value.numel();
  return n;
}

CommStats TensorPipelineTrainer::last_step_comm() {
  CommStats total;
  for (int t = 0; t < tp_; ++t)
    for (int s = 0; s < pp_; ++s)
      if (GradientSync* g = pipeline(t).stage(s).gradient_sync()) {
        total.bytes_sent += g->last_step_stats().bytes_sent;
        total.bytes_uncompressed += g->last_step_stats().bytes_uncompressed;
        total.buckets += g->last_step_stats().buckets;
      }
  return total;
}

}  // namespace troupe
