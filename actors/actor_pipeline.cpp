// ActorPipeline: spawning the stage actors and coordinating one training step over the protocol.
#include "actors/actor_pipeline.h"

#include <chrono>

#include "actors/actor_system.h"
#include "actors/exchange_actor.h"
#include "actors/optimizer_actor.h"
#include "actors/replica_actor.h"
#include "actors/stage_actor.h"
#include "actors/state/step_coordinator.h"
#include "runtime/schedule/grid.h"

namespace troupe {

namespace {
PipelineOptions concurrent(PipelineOptions o) {
  o.concurrent_stages = true;
  return o;
}

}  // namespace

struct ActorPipeline::Actors {
  std::shared_ptr<ActorSystem> system;
  std::unique_ptr<caf::scoped_actor> self;
  std::vector<caf::actor> stages;
  std::vector<caf::actor> optimizers;  // stage s's optimizer-state actor
  std::vector<caf::actor> exchanges;   // stage s's gradient-exchange actor, where it has one
  caf::actor replica;                  // their supervisor and step coordinator (replica_actor.h)
};

namespace {
// The Topology this replica is part of, as its options describe it (tests build pipelines whose
// options differ from config.parallel), for the supervisor to name its stages' places when no run
// topology is given.
plan::Topology replica_topology(const PipelineDriver& driver) {
  RunConfig c = driver.config();
  const PipelineOptions& o = driver.options();
  c.parallel.pipeline = o.stages;
  c.parallel.virtual_stages = o.virtual_stages;
  c.parallel.microbatches = o.microbatches;
  c.parallel.schedule = o.schedule;
  c.parallel.boundaries = o.boundaries;
  c.parallel.data = o.replicas;
  if (c.parallel.gradient_exchange == GradientExchange::ps) c.parallel.gradient_exchange = GradientExchange::ring;
  return plan::make_topology(c, layer_info(make_layer_specs(c.model, c.train.seed)),
                             std::vector<Device>(static_cast<std::size_t>(o.stages), Device::cpu()));
}
}  // namespace

ActorPipeline::ActorPipeline(const RunConfig& config, PipelineOptions options, std::shared_ptr<ActorSystem> system,
                             const plan::Topology* run_topology)
    : driver_(config, concurrent(std::move(options))), actors_(std::make_unique<Actors>()) {
  const plan::Topology topology = run_topology ? *run_topology : replica_topology(driver_);
  supervision::Node replica =
      supervision::make_supervision_tree(topology).children.at(static_cast<std::size_t>(driver_.options().replica));
  // A pipeline of tensor shards supervises its own shard of every stage.
  if (!driver_.options().tensor_groups.empty())
    replica = supervision::tensor_shard_view(replica, driver_.options().tensor_groups.front().rank());
  supervisor_ = std::make_unique<supervision::Supervisor>(
      std::move(replica), topology,
      supervision::RestartIntensity(config.fault.max_restarts, config.fault.restart_window_s));
  actors_->system = system ? std::move(system) : std::make_shared<ActorSystem>();
  actors_->self = std::make_unique<caf::scoped_actor>(actors_->system->get());
  actors_->replica = actors_->system->get().spawn(replica_actor, &driver_, supervisor_.get(), &trace_);
  const auto poll = std::chrono::microseconds(driver_.config().comm.poll_us);
  for (int s = 0; s < driver_.num_stages(); ++s) {
    // The optimizer state runs on the system's scheduler (its work comes while the stage waits for it).
    actors_->optimizers.push_back(actors_->system->get().spawn(optimizer_actor, &driver_.stage(s)));
    actors_->stages.push_back(
        actors_->system->get().spawn<caf::detached>(stage_actor, &driver_.stage(s), actors_->optimizers.back(), poll));
  }
  // The replica actor monitors them (before any of them can run a step) and coordinates their steps.
  (*actors_->self)->send(actors_->replica, proto::children_atom::value, actors_->stages, actors_->optimizers,
                         std::vector<caf::actor>(actors_->stages.size()));
  for (auto& a : actors_->stages) (*actors_->self)->send(a, proto::peers_atom::value, actors_->stages, actors_->replica);
}

ActorPipeline::~ActorPipeline() {
  // Waits for this pipeline's own stages only: the system may hold other replicas' stages, still running.
  caf::scoped_actor& self = *actors_->self;
  // The replica actor may have restarted children since they were spawned here: it names those alive.
  std::vector<caf::actor> restarted;
  self->request(actors_->replica, caf::infinite, proto::children_atom::value)
      .receive([&](std::vector<caf::actor>& alive) { restarted = std::move(alive); }, [](caf::error&) {});
  for (auto& a : actors_->stages) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (auto& a : actors_->optimizers) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (auto& a : actors_->exchanges) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (auto& a : restarted) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(actors_->replica, caf::exit_reason::user_shutdown);
  self->wait_for(actors_->stages, actors_->optimizers, actors_->exchanges, restarted, actors_->replica);
  actors_->self.reset();
}

void ActorPipeline::start_gradient_exchanges() {
  TROUPE_CHECK(actors_->exchanges.empty(), "the gradient exchanges are started once");
  for (int s = 0; s < driver_.num_stages(); ++s) {
    GradientSync* sync = driver_.stage(s).gradient_sync();
    if (!sync || !sync->can_overlap()) {
      actors_->exchanges.emplace_back();  // keeps index = stage
      continue;
    }
    actors_->exchanges.push_back(spawn_exchange_actor(actors_->system->get(), *sync));
  }
  (*actors_->self)->send(actors_->replica, proto::children_atom::value, actors_->stages, actors_->optimizers,
                         actors_->exchanges);
}

void ActorPipeline::end_gradient_exchange(int stage) {
  const caf::actor& exchange = actors_->exchanges.at(static_cast<std::size_t>(stage));
  TROUPE_CHECK(exchange, "stage ", stage, " has no gradient-exchange actor");
  caf::anon_send_exit(exchange, caf::exit_reason::kill);
  (*actors_->self)->wait_for(exchange);
}

void ActorPipeline::set_trace(TraceRecorder* trace) {
  trace_ = trace;
  for (int s = 0; s < driver_.num_stages(); ++s) driver_.stage(s).set_trace(trace, trace->track("stage " + std::to_string(s)));
}

const caf::actor& ActorPipeline::coordinator() const { return actors_->replica; }

StepStats ActorPipeline::train_step(std::int64_t step) {
  caf::scoped_actor& self = *actors_->self;
  self->send(actors_->replica, proto::step_atom::value, step);
  StepStats stats;
  self->receive([&](proto::done_atom, int, StepStats& s) { stats = std::move(s); },
                [&](proto::failed_atom, int, std::int32_t kind, std::string& report) {
                  throw replica_failure(kind, report);
                });
  return stats;
}

}  // namespace troupe
