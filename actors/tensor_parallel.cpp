// TensorParallelTrainer: one Trainer per (replica, shard) over its tensor and data InprocWorlds, each run by a detached tensor-shard actor of the process's actor system.
#include "actors/tensor_parallel.h"

#include <chrono>

#include <fmt/format.h>

#include "actors/actor_system.h"
#include "actors/message_poll.h"
#include "actors/tensor_shard_actor.h"
#include "models/model.h"
#include "runtime/supervision/supervision_tree.h"

namespace troupe {

TensorParallelTrainer::TensorParallelTrainer(const RunConfig& config, std::shared_ptr<ActorSystem> system,
                                             const plan::Topology* topology)
    : deaths_(std::make_shared<Deaths>()) {
  dp_ = config.parallel.data;
  tp_ = config.parallel.tensor;
  const std::chrono::milliseconds timeout(static_cast<long long>(config.comm.timeout_s * 1000.0));
  for (int d = 0; d < dp_; ++d) tensor_worlds_.push_back(std::make_unique<net::InprocWorld>(tp_, timeout));
  if (dp_ > 1)
    for (int t = 0; t < tp_; ++t) data_worlds_.push_back(std::make_unique<net::InprocWorld>(dp_, timeout));
  for (int d = 0; d < dp_; ++d)
    for (int t = 0; t < tp_; ++t) {
      transports_.push_back(tensor_worlds_[static_cast<std::size_t>(d)]->transport(t));
      comm::Transport* tensor = transports_.back().get();
      comm::Transport* data = nullptr;
      if (dp_ > 1) {
        transports_.push_back(data_worlds_[static_cast<std::size_t>(t)]->transport(d));
        data = transports_.back().get();
      }
      shards_.push_back(std::make_unique<Trainer>(config, comm::TensorGroup{tensor}, data));
    }
  const plan::Topology plan =
      topology ? *topology
               : plan::make_topology(config, layer_info(make_layer_specs(config.model, config.train.seed)),
                                     std::vector<std::string>(1, "cpu:0"));
  supervisor_ = std::make_unique<supervision::Supervisor>(supervision::make_supervision_tree(plan), plan);
  system_ = system ? std::move(system) : std::make_shared<ActorSystem>();
  caf::actor_system& sys = system_->get();
  for (std::size_t i = 0; i < shards_.size(); ++i) {
    actors_.push_back(sys.spawn<caf::detached>(tensor_shard_actor, shards_[i].get(), [this, i] { break_groups(i); }));
    // A shard that ends other than by the trainer's own stop breaks its groups at once (its peers would
    // otherwise wait out comm.timeout_s in a collective with it) and is remembered for the report.
    std::shared_ptr<Deaths> deaths = deaths_;
    caf::actor_cast<caf::abstract_actor*>(actors_.back())->attach_functor([this, deaths, &sys, i](const caf::error& reason) {
      std::lock_guard lock(deaths->mu);
      if (deaths->stopping) return;
      if (!deaths->first) deaths->first = std::make_pair(i, sys.render(reason));
      break_groups(i);
    });
  }
}

void TensorParallelTrainer::break_groups(std::size_t i) {
  const int d = static_cast<int>(i) / tp_, t = static_cast<int>(i) % tp_;
  tensor_worlds_[static_cast<std::size_t>(d)]->kill(t);
  if (!data_worlds_.empty()) data_worlds_[static_cast<std::size_t>(t)]->kill(d);
}

TensorParallelTrainer::~TensorParallelTrainer() {
  {
    std::lock_guard lock(deaths_->mu);
    deaths_->stopping = true;
  }
  // Waits for its own actors only: the system may hold other actors of the process, still running.
  for (const caf::actor& a : actors_) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  caf::scoped_actor self(system_->get());
  self->wait_for(actors_);
}

std::string TensorParallelTrainer::shard_name(std::size_t i) const {
  return fmt::format("replica {}/stage 0/tensor {}", i / static_cast<std::size_t>(tp_), i % static_cast<std::size_t>(tp_));
}

template <class R, class... Ts>
std::vector<R> TensorParallelTrainer::ask_shards(std::size_t count, std::int64_t step, Ts... request) {
  caf::actor_system& sys = system_->get();
  caf::scoped_actor self(sys);
  std::vector<decltype(self->request(actors_[0], caf::infinite, request...))> pending;
  for (std::size_t i = 0; i < count; ++i) pending.push_back(self->request(actors_[i], caf::infinite, request...));
  // Answers that come quickly (a short request) are taken awake (message_poll.h).
  poll_for_replies(self.ptr(), count, std::chrono::microseconds(shards_[0]->config().comm.poll_us));
  std::vector<R> answers(count);
  std::optional<Error> failure;
  for (std::size_t t = 0; t < count; ++t)
    pending[t].receive([&](R& r) { answers[t] = std::move(r); },
                       [&](caf::error& e) {
                         if (failure) return;
                         const caf::message& ctx = e.context();
                         if (ctx.size() == 2 && ctx.match_element<std::int32_t>(0) && ctx.match_element<std::string>(1))
                           failure = Error(static_cast<ErrorKind>(ctx.get_as<std::int32_t>(0)), ctx.get_as<std::string>(1));
                         else
                           failure = Error(ErrorKind::kInternal, shard_name(t) + ": " + sys.render(e));
                       });
  if (!failure) return answers;
  // A dead shard actor is the cause of its peers' failures: its supervisor names it and its place.
  std::optional<std::pair<std::size_t, std::string>> dead;
  {
    std::lock_guard lock(deaths_->mu);
    dead = deaths_->first;
  }
  if (dead)
    throw Error(ErrorKind::kIo, supervisor_->on_down(shard_name(dead->first), step, dead->second).report +
                                    "\n(its peers saw: " + failure->what() + ")");
  throw *failure;
}

StepStats TensorParallelTrainer::train_step(std::int64_t step) {
  return ask_shards<StepStats>(actors_.size(), step, proto::step_atom::value, step).at(0);
}

// Replicas hold the same weights: replica 0's shards evaluate and write files for all.
EvalStats TensorParallelTrainer::evaluate() {
  return ask_shards<EvalStats>(static_cast<std::size_t>(tp_), -1, proto::eval_atom::value).at(0);
}

void TensorParallelTrainer::load_weights(const std::string& path) {
  ask_shards<bool>(actors_.size(), -1, proto::load_atom::value, path);
}

void TensorParallelTrainer::save_weights(const std::string& path) {
  ask_shards<bool>(static_cast<std::size_t>(tp_), -1, proto::save_atom::value, path);
}

TrainingState TensorParallelTrainer::training_state(std::int64_t steps_done) {
  return ask_shards<TrainingState>(static_cast<std::size_t>(tp_), -1, proto::state_atom::value, steps_done).at(0);
}

void TensorParallelTrainer::restore_training_state(const TrainingState& state, const std::string& source) {
  ask_shards<bool>(actors_.size(), -1, proto::restore_atom::value, state, source);
}

void TensorParallelTrainer::kill_shard(int t, int d) {
  const caf::actor& a = actors_.at(static_cast<std::size_t>(d * tp_ + t));
  caf::anon_send_exit(a, caf::exit_reason::kill);
  caf::scoped_actor self(system_->get());
  self->wait_for(a);
}

std::int64_t TensorParallelTrainer::param_count() const {
  std::int64_t n = 0;
  for (std::size_t t = 0; t < static_cast<std::size_t>(tp_); ++t)  // replica 0's shards
    for (const Param* p : shards_[t]->model().params().all())
      if (t == 0 || p->split.split()) n += p->value.numel();
  return n;
}

}  // namespace troupe
