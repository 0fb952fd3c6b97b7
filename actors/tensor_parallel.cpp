// TensorParallelTrainer: one Trainer per (replica, shard) over its tensor and data InprocWorlds, each run by a detached tensor-shard actor of the process's actor system.
#include "actors/tensor_parallel.h"

#include <chrono>
#include <tuple>

#include <fmt/format.h>

#include "actors/actor_system.h"
#include "actors/message_poll.h"
#include "actors/tensor_shard_actor.h"
#include "runtime/supervision/fault_plan.h"
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
                                     std::vector<Device>(1, Device::cpu()));
  supervisor_ = std::make_unique<supervision::Supervisor>(
      supervision::make_supervision_tree(plan), plan,
      supervision::RestartIntensity(config.fault.max_restarts, config.fault.restart_window_s));
  restarts_on_ = config.fault.max_restarts > 0;
  checkpoint_dir_ = config.train.checkpoint_dir;
  for (const supervision::FaultClause& c : supervision::parse_fault_plan(config.fault.inject).clauses)
    if (c.target == supervision::FaultTarget::shard) faults_.push_back(c);  // the config allows no other here
  system_ = system ? std::move(system) : std::make_shared<ActorSystem>();
  for (std::size_t i = 0; i < shards_.size(); ++i) actors_.push_back(spawn_shard(i));
}

caf::actor TensorParallelTrainer::spawn_shard(std::size_t i) {
  caf::actor_system& sys = system_->get();
  caf::actor a = sys.spawn<caf::detached>(tensor_shard_actor, shards_[i].get(), [this, i] { break_groups(i); }, restarts_on_);
  // A shard that ends other than by the trainer's own stop breaks its groups at once (its peers would
  // otherwise wait out comm.timeout_s in a collective with it) and is remembered for the report.
  std::shared_ptr<Deaths> deaths = deaths_;
  caf::actor_cast<caf::abstract_actor*>(a)->attach_functor([this, deaths, &sys, i](const caf::error& reason) {
    std::lock_guard lock(deaths->mu);
    if (deaths->stopping) return;
    // Its own failure carries (kind, text) (tensor_shard_actor.h); anything else is CAF's.
    const caf::message& ctx = reason.context();
    const std::string cause = ctx.size() == 2 && ctx.match_element<std::int32_t>(0) && ctx.match_element<std::string>(1)
                                  ? ctx.get_as<std::string>(1)
                                  : sys.render(reason);
    if (!deaths->first) deaths->first = std::make_pair(i, cause);
    deaths->all.emplace(i, std::make_pair(cause, clock_s()));
    break_groups(i);
    deaths->recorded.notify_all();
  });
  return a;
}

void TensorParallelTrainer::break_groups(std::size_t i) {
  if (restarts_on_) {  // the step is re-run on every shard: its groups are reformed, not dead
    for (auto& w : tensor_worlds_) w->abort();
    for (auto& w : data_worlds_) w->abort();
    return;
  }
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
  std::optional<Error> failure, abandoned;
  for (std::size_t t = 0; t < count; ++t)
    pending[t].receive([&](R& r) { answers[t] = std::move(r); },
                       [&](caf::error& e) {
                         if (failure) return;
                         const caf::message& ctx = e.context();
                         if (ctx.size() == 2 && ctx.match_element<std::int32_t>(0) && ctx.match_element<std::string>(1)) {
                           // A peer's failure stopped this one (restarts on): the peer's error is the cause.
                           if (ctx.get_as<std::int32_t>(0) == kShardStepAbandoned) {
                             if (!abandoned) abandoned = Error(ErrorKind::kIo, shard_name(t) + ": " + ctx.get_as<std::string>(1));
                             return;
                           }
                           failure = Error(static_cast<ErrorKind>(ctx.get_as<std::int32_t>(0)), ctx.get_as<std::string>(1));
                         } else {
                           failure = Error(ErrorKind::kInternal, shard_name(t) + ": " + sys.render(e));
                         }
                       });
  if (!failure) failure = std::move(abandoned);
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

double TensorParallelTrainer::clock_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - born_).count();
}

StepStats TensorParallelTrainer::train_step(std::int64_t step) {
  if (!restarts_on_) return ask_shards<StepStats>(actors_.size(), step, proto::step_atom::value, step).at(0);
  for (bool rewind = false;; rewind = true) {
    Attempt a = attempt_step(step, rewind);
    if (!a.failure) {
      supervisor_->intensity().recovered(clock_s());
      return a.stats;
    }
    restart_shards(step, a);  // or throws the escalation
    supervisor_->intensity().rerun(clock_s());
  }
}

TensorParallelTrainer::Attempt TensorParallelTrainer::attempt_step(std::int64_t step, bool rewind) {
  caf::actor_system& sys = system_->get();
  caf::scoped_actor self(sys);
  // fault.inject: one clause per shard and attempt (a second for the same shard and step fires in the
  // re-run). Between attempts every shard actor is idle: its Trainer is ours to arm.
  std::vector<char> hit(actors_.size(), 0);
  for (auto it = faults_.begin(); it != faults_.end();) {
    const std::size_t i = static_cast<std::size_t>(it->replica * tp_ + it->shard);
    if (it->step != step || hit[i]) {
      ++it;
      continue;
    }
    hit[i] = 1;
    if (it->action == supervision::FaultAction::kill) self->send_exit(actors_[i], caf::exit_reason::kill);
    else shards_[i]->inject_fault();
    it = faults_.erase(it);
  }
  std::vector<decltype(self->request(actors_[0], caf::infinite, proto::step_atom::value, step, true, rewind))> pending;
  for (const caf::actor& a : actors_) pending.push_back(self->request(a, caf::infinite, proto::step_atom::value, step, !rewind, rewind));
  poll_for_replies(self.ptr(), actors_.size(), std::chrono::microseconds(shards_[0]->config().comm.poll_us));
  Attempt out;
  for (std::size_t i = 0; i < actors_.size(); ++i)
    pending[i].receive(
        [&](StepStats& s) {
          if (i == 0) out.stats = std::move(s);
        },
        [&](caf::error& e) {
          const caf::message& ctx = e.context();
          const bool own = ctx.size() == 2 && ctx.match_element<std::int32_t>(0) && ctx.match_element<std::string>(1);
          if (own && ctx.get_as<std::int32_t>(0) == kShardStepAbandoned) {  // a peer's failure stopped it
            if (!out.failure) out.failure = Error(ErrorKind::kIo, shard_name(i) + ": " + ctx.get_as<std::string>(1));
            return;
          }
          const std::string cause = own ? ctx.get_as<std::string>(1) : sys.render(e);
          const ErrorKind kind = own ? static_cast<ErrorKind>(ctx.get_as<std::int32_t>(0)) : ErrorKind::kIo;
          if (own && !failure_restarts(kind)) {  // answered: the actor lives, the step fails as it is
            if (!out.final_failure) out.final_failure = Error(kind, cause);
            out.failure = Error(kind, cause);
            return;
          }
          out.failure = Error(kind, shard_name(i) + ": " + cause);
          out.failed.push_back(i);
          out.causes.push_back(cause);
        });
  return out;
}

void TensorParallelTrainer::restart_shards(std::int64_t step, const Attempt& attempt) {
  // Only the death of a shard actor is restarted; a step that failed otherwise (a failure the re-run would
  // meet again, or nothing died) fails as it would without restarts.
  if (attempt.final_failure) throw *attempt.final_failure;
  if (attempt.failed.empty()) throw *attempt.failure;
  caf::scoped_actor self(system_->get());
  for (std::size_t k = 0; k < attempt.failed.size(); ++k) {
    const std::size_t i = attempt.failed[k];
    self->wait_for(actors_[i]);  // a failed shard actor ends after it answered
    std::string cause = attempt.causes[k];
    double died_s = clock_s();
    {
      // Its death's functor (spawn_shard) aborts the groups: it must have run before they are reformed,
      // or it would abort the re-run. It runs as the actor ends, in no set order with wait_for's.
      std::unique_lock lock(deaths_->mu);
      deaths_->recorded.wait_for(lock, std::chrono::seconds(10), [&] { return deaths_->all.count(i) > 0; });
      if (const auto it = deaths_->all.find(i); it != deaths_->all.end()) std::tie(cause, died_s) = it->second;
    }
    const std::string child = shard_name(i);
    supervisor_->on_down(child, step, cause);
    if (!supervisor_->intensity().allow(child, step, cause, died_s))
      throw Error(attempt.failure->kind(),
                  supervisor_->intensity().escalation(supervisor_->place(child), step, cause, checkpoint_dir_));
    actors_[i] = spawn_shard(i);
    supervisor_->on_restart(child);
  }
  {
    std::lock_guard lock(deaths_->mu);
    deaths_->first.reset();
    deaths_->all.clear();
  }
  // Every shard has answered: no rank is inside a collective, the groups can be made whole.
  for (auto& w : tensor_worlds_) w->reform();
  for (auto& w : data_worlds_) w->reform();
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
