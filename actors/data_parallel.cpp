// DataParallelTrainer: replicas built, wired per stage over in-process groups, stepped on one thread each.
#include "actors/data_parallel.h"

#include "actors/actor_system.h"

#include <algorithm>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "actors/group_step.h"
#include "actors/protocol.h"
#include "actors/replica_actor.h"
#include "runtime/comm/hierarchical.h"
#include "runtime/comm/group_aborted.h"
#include "runtime/comm/transport_replica_sum.h"


namespace troupe {

PipelineOptions pipeline_options(const RunConfig& config, int replica) {
  PipelineOptions o;
  o.stages = config.parallel.pipeline;
  o.virtual_stages = config.parallel.virtual_stages;
  o.microbatches = config.parallel.microbatches;
  o.schedule = config.parallel.schedule;
  o.boundaries = config.parallel.boundaries;
  o.credits = config.parallel.credits;
  o.replica = replica;
  o.replicas = config.parallel.data;
  return o;
}

GradientSyncOptions gradient_sync_options(const RunConfig& config) {
  GradientSyncOptions o;
  o.exchange = config.parallel.gradient_exchange;
  o.zero = config.parallel.zero == 1;
  o.bucket_mb = config.comm.bucket_mb;
  o.compression = config.comm.compression;
  return o;
}

namespace {
// The host of stage `stage`'s copy in every replica, as indices (comm::host_indices), by replica.
std::vector<int> replica_hosts(const plan::Topology& topology, int stage) {
  std::vector<std::string> names;
  for (int r : topology.group_of(topology.rank_of(plan::Coord{0, stage, 0}), plan::Axis::data))
    names.push_back(topology.places.at(static_cast<std::size_t>(r)).host);
  return comm::host_indices(names);
}

RunConfig per_replica(const RunConfig& config, int replicas_here) {
  RunConfig per = config;
  const int threads = config.train.threads > 0 ? config.train.threads
                                               : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  per.train.threads = std::max(1, threads / replicas_here);
  return per;
}
}  // namespace

void attach_gradient_syncs(PipelineDriver& driver, std::vector<std::unique_ptr<comm::Transport>> transports,
                           const GradientSyncOptions& options) {
  TROUPE_CHECK(static_cast<int>(transports.size()) == driver.num_stages(), transports.size(), " transports for ",
               driver.num_stages(), " stages");
  for (int s = 0; s < driver.num_stages(); ++s)
    driver.stage(s).attach_gradient_sync(std::make_unique<GradientSync>(std::move(transports[s]), options));
}

DataParallelTrainer::DataParallelTrainer(const RunConfig& config, bool actors, const plan::Topology* topology)
    : config_(config) {
  const int d = config.parallel.data;
  group_restarts_ = actors && d > 1;  // every replica is an actor pipeline of this process
  if (config.parallel.gradient_exchange == GradientExchange::ps)
    throw Error(ErrorKind::kConfig, "parallel.gradient_exchange = ps is served by the parameter-server trainer, not "
                                    "by ring/alltoall replicas");
  // The machine's threads are shared by the replicas (results do not depend on thread counts).
  const RunConfig per = per_replica(config, d);
  const auto timeout = std::chrono::milliseconds(static_cast<long long>(config.comm.timeout_s * 1000.0));
  const bool sync_stats = config.model.sync_batchnorm && d > 1;
  for (int s = 0; s < config.parallel.pipeline; ++s) {
    worlds_.push_back(std::make_unique<net::InprocWorld>(d, timeout));
    if (sync_stats) stats_worlds_.push_back(std::make_unique<net::InprocWorld>(d, timeout));
  }
  for (int r = 0; r < d; ++r) {
    std::vector<std::unique_ptr<comm::Transport>> transports;
    for (auto& w : worlds_) transports.push_back(w->transport(r));
    add_replica(per, r, std::move(transports), actors, topology);
    for (std::size_t s = 0; s < stats_worlds_.size(); ++s)
      drivers_.back()->stage(static_cast<int>(s)).attach_replica_sum(
          std::make_unique<comm::TransportReplicaSum>(stats_worlds_[s]->transport(r)));
  }
}

void DataParallelTrainer::add_replica(const RunConfig& per, int rank,
                                      std::vector<std::unique_ptr<comm::Transport>> transports, bool actors,
                                      const plan::Topology* topology) {
  if (actors) {
    if (!actor_system_) actor_system_ = std::make_shared<ActorSystem>();
    PipelineOptions options = pipeline_options(config_, rank);
    options.group_restarts = group_restarts_;
    actor_pipelines_.push_back(std::make_unique<ActorPipeline>(per, options, actor_system_, topology));
    drivers_.push_back(&actor_pipelines_.back()->driver());
  } else {
    own_drivers_.push_back(std::make_unique<PipelineDriver>(per, pipeline_options(config_, rank)));
    drivers_.push_back(own_drivers_.back().get());
  }
  PipelineDriver& driver = *drivers_.back();
  for (int s = 0; s < driver.num_stages(); ++s) {
    GradientSyncOptions options = gradient_sync_options(config_);
    if (!worlds_.empty()) options.local_group = worlds_.at(static_cast<std::size_t>(s))->local_group();
    if (topology) options.replica_hosts = replica_hosts(*topology, s);
    driver.stage(s).attach_gradient_sync(std::make_unique<GradientSync>(std::move(transports.at(s)), options));
  }
  if (actors) actor_pipelines_.back()->start_gradient_exchanges();
}

DataParallelTrainer::DataParallelTrainer(const RunConfig& config, int rank,
                                         std::vector<std::unique_ptr<comm::Transport>> transports, bool actors,
                                         const plan::Topology* topology,
                                         std::vector<std::unique_ptr<comm::Transport>> stats_transports,
                                         std::unique_ptr<ProcessRecovery> recovery)
    : config_(config), recovery_(std::move(recovery)) {
  TROUPE_CHECK(rank >= 0 && rank < config.parallel.data, "rank ", rank, " of ", config.parallel.data, " replicas");
  if (recovery_) {
    TROUPE_CHECK(actors && stats_transports.empty(), "process recovery needs actors and no statistics groups");
    for (auto& t : transports) {
      auto* reformable = dynamic_cast<comm::ReformableTransport*>(t.get());
      TROUPE_CHECK(reformable != nullptr, "process recovery needs reformable transports");
      reformable_.push_back(reformable);
    }
    group_restarts_ = true;  // the replica actor abandons and re-runs on order, as the group's member
  }
  const bool sync_stats = config.model.sync_batchnorm && config.parallel.data > 1;
  TROUPE_CHECK(static_cast<int>(stats_transports.size()) == (sync_stats ? config.parallel.pipeline : 0),
               stats_transports.size(), " statistics groups for ", config.parallel.pipeline, " stages");
  // The other replicas are processes on the same machine: share its threads with them.
  add_replica(per_replica(config, config.parallel.data), rank, std::move(transports), actors, topology);
  // Restarts of this process's own actors reach rank 0's report (the group re-forms around some of them), and
  // its supervisor's escalation stops the job there.
  if (recovery_ && rank > 0)
    actor_pipelines_[0]->observe_restarts(ProcessRecovery::restart_forwarder(rank),
                                          ProcessRecovery::escalation_forwarder(rank));
  for (std::size_t s = 0; s < stats_transports.size(); ++s)
    drivers_.back()->stage(static_cast<int>(s)).attach_replica_sum(
        std::make_unique<comm::TransportReplicaSum>(std::move(stats_transports[s])));
}

DataParallelTrainer::~DataParallelTrainer() = default;

StepStats DataParallelTrainer::train_step(std::int64_t step) {
  const int d = replicas();
  std::vector<StepStats> stats(static_cast<std::size_t>(d));
  int first_failed = -1;
  std::optional<Error> failure;
  // A replica that fails is marked dead in every group, so its peers stop at once instead of waiting
  // out comm.timeout_s; the one that failed first explains more than its peers' "rank r is dead".
  std::function<void(int, Error)> failed = [&](int r, Error e) {
    if (first_failed < 0) {
      first_failed = r;
      failure = std::move(e);
    }
    for (auto& w : worlds_) w->kill(r);
    for (auto& w : stats_worlds_) w->kill(r);
  };
  if (!actor_pipelines_.empty()) {
    // Every replica's actor coordinates its own step; this thread only starts them and collects — and,
    // with group restarts, re-runs a step interrupted on one replica on all of them (step_group below).
    caf::scoped_actor self{actor_system_->get()};
    const int first = drivers_[0]->options().replica;  // 0, or this process's rank (processes form)
    for (auto& p : actor_pipelines_) self->send(p->coordinator(), proto::step_atom::value, step);
    if (recovery_) {
      stats[0] = step_process(self, step);
    } else if (group_restarts_) {
      step_group(self, step, stats, failed);
    } else {
      for (int answers = 0; answers < d; ++answers)
        self->receive([&](proto::done_atom, int r, StepStats& s) { stats[static_cast<std::size_t>(r - first)] = std::move(s); },
                      [&](proto::failed_atom, int r, std::int32_t kind, std::string& report) {
                        failed(r, replica_failure(kind, report));
                      });
    }
  } else {
    // The in-thread reference: each replica's driver runs its stages on the calling thread and blocks
    // in its collectives until its peers arrive, so D replicas need D threads.
    std::vector<std::optional<Error>> errors(static_cast<std::size_t>(d));
    std::mutex mu;
    auto run = [&](int r) {
      try {
        stats[static_cast<std::size_t>(r)] = own_drivers_.at(static_cast<std::size_t>(r))->train_step(step);
      } catch (const Error& e) {
        std::lock_guard lock(mu);
        failed(r, e);
      } catch (const std::exception& e) {
        std::lock_guard lock(mu);
        failed(r, Error(ErrorKind::kInternal, e.what()));
      }
    };
    std::vector<std::thread> threads;
    for (int r = 1; r < d; ++r) threads.emplace_back(run, r);
    run(0);
    for (auto& t : threads) t.join();
  }
  if (failure) throw *failure;
  if (!recovery_) last_step_run_ = step;
  return stats[0];  // its loss and row count are the whole batch's (losses are gathered)
}

// This process's whole state at the boundary it stands at (between steps, or after a rewind).
TrainingState DataParallelTrainer::local_state(std::int64_t step) const {
  TrainingState s;
  s.step = step;
  drivers_[0]->gather_params_into(s);
  drivers_[0]->gather_optimizer_state_into(s.optimizer, true);
  return s;
}

// The multi-process form's supervisor of its one replica. A peer process that dies or hangs makes a
// collective here fail: the ReformableTransport turns that into comm::GroupAborted (the stage abandons the
// step instead of dying) and says so (interrupted()); a death of an actor of this replica (restarted by
// the replica actor) says so with interrupted_atom. Then:
//   1. this process ends its groups (break_group), so every other process learns of it at once;
//   2. its replica abandons the step and answers quiet once none of its actors touches a group;
//   3. every stage rewinds to the step boundary it kept, and the groups re-form (ProcessRecovery: rank 0
//      restarts the dead process; every process agrees on rank 0's step, and one standing elsewhere — a
//      step ahead or behind, or new — takes rank 0's state);
//   4. the replica re-runs that step (rerun_atom). A failure during it starts another round.
StepStats DataParallelTrainer::step_process(caf::scoped_actor& self, std::int64_t step) {
  ActorPipeline& pipeline = *actor_pipelines_[0];
  PipelineDriver& driver = pipeline.driver();
  const auto interrupted = [&] {
    return std::any_of(reformable_.begin(), reformable_.end(), [](auto* t) { return t->interrupted(); });
  };
  const auto limit = std::chrono::milliseconds(static_cast<long long>(config_.comm.timeout_s * 1000.0)) +
                     std::chrono::seconds(1);
  std::int64_t running = step;
  for (;;) {
    std::optional<StepStats> done;
    bool broken = false, own = false;  // own: an actor of this replica died (and was restarted)
    while (!done && !broken) {
      self->receive([&](proto::done_atom, int, StepStats& s) { done = std::move(s); },
                    [&](proto::failed_atom, int, std::int32_t kind, std::string& report) {
                      throw replica_failure(kind, report);
                    },
                    [&](proto::interrupted_atom, int, std::int64_t, std::uint64_t) { broken = own = true; },
                    [&](proto::quiet_atom, int, std::uint64_t) {},  // an older round's
                    caf::after(std::chrono::milliseconds(20)) >> [&] {});
      broken = broken || (!done && interrupted());
    }
    if (done) {
      last_step_run_ = running;
      recovery_->step_done();
      return *done;
    }
    for (auto* t : reformable_) t->break_group();
    ++group_round_;
    self->send(pipeline.coordinator(), proto::abandon_atom::value, running, group_round_);
    for (bool quiet = false; !quiet;)
      self->receive([&](proto::quiet_atom, int, std::uint64_t round) { quiet = round == group_round_; },
                    [&](proto::done_atom, int, StepStats&) {},
                    [&](proto::interrupted_atom, int, std::int64_t, std::uint64_t) {},
                    [&](proto::failed_atom, int, std::int32_t kind, std::string& report) {
                      throw replica_failure(kind, report);
                    },
                    caf::after(limit) >> [&] {
                      throw Error(ErrorKind::kInternal,
                                  fmt::format("data-parallel rank {} did not abandon step {} within comm.timeout_s = {} s "
                                              "after a peer process failed (an actor of it is stuck); the job stops",
                                              driver.options().replica, running, config_.comm.timeout_s));
                    });
    // Where every stage stands: the boundary each kept (-1 when they differ: this process takes rank 0's).
    std::int64_t boundary = driver.stage(0).boundary_step();
    for (int s = 1; s < driver.num_stages(); ++s)
      if (driver.stage(s).boundary_step() != boundary) boundary = -1;
    TROUPE_CHECK(driver.options().replica != 0 || boundary == running, "rank 0 stands at step ", boundary,
                 "'s boundary in step ", running);
    if (boundary >= 0)
      for (int s = 0; s < driver.num_stages(); ++s) driver.stage(s).rewind(boundary);
    std::string cause;
    for (auto* t : reformable_)
      if (!own && cause.empty()) cause = t->first_failure();
    ReformedGroups groups = recovery_->reform(boundary, running, [&] { return local_state(boundary); }, cause);
    running = install(groups);
    if (running >= config_.train.steps) {  // the others had finished: this process stands there too now
      last_step_run_ = config_.train.steps - 1;
      return StepStats{};
    }
    recovery_->rerun_ordered();
    self->send(pipeline.coordinator(), proto::rerun_atom::value, running, group_round_);
  }
}

std::int64_t DataParallelTrainer::install(ReformedGroups& groups) {
  PipelineDriver& driver = *drivers_[0];
  for (std::size_t i = 0; i < reformable_.size(); ++i)
    reformable_[i]->replace(std::move(groups.transports.at(i)), std::move(groups.breakers.at(i)));
  for (int s = 0; s < driver.num_stages(); ++s)
    if (GradientSync* g = driver.stage(s).gradient_sync()) g->reform();
  if (groups.agreed.state) {
    driver.restore_training_state(*groups.agreed.state, "rank 0");
    for (int s = 0; s < driver.num_stages(); ++s) driver.stage(s).keep_boundary(groups.agreed.step);
  }
  return groups.agreed.step;
}

std::int64_t DataParallelTrainer::finish_together() {
  TROUPE_CHECK(recovery_ != nullptr, "finish_together without recovery");
  const std::int64_t steps = config_.train.steps;
  for (;;) {
    try {
      recovery_->barrier(*reformable_[0]);
      return steps;
    } catch (const comm::GroupAborted&) {
      // A peer died after this process's last step: this process's state is the last step's (it was
      // between steps, nothing to rewind); the group re-forms around rank 0's step.
      const std::string cause = reformable_[0]->first_failure();
      for (auto* t : reformable_) t->break_group();
      ReformedGroups groups = recovery_->reform(steps, steps, [&] { return local_state(steps); }, cause);
      const std::int64_t next = install(groups);
      if (next < steps) return next;
    }
  }
}

std::int64_t DataParallelTrainer::rejoin() {
  TROUPE_CHECK(recovery_ != nullptr, "rejoin without recovery");
  // The groups are formed already (this process joined them as it started): agree over stage 0's.
  Agreement agreed = recovery_->agree(reformable_[0]->inner(), -1, {});
  TROUPE_CHECK(agreed.state.has_value(), "rank 0 sent no state to a restarted rank");
  drivers_[0]->restore_training_state(*agreed.state, "rank 0");
  return agreed.step;
}

// The replicas' supervisor: every replica re-runs a step interrupted on one of them (actors/group_step.h).
void DataParallelTrainer::step_group(caf::scoped_actor& self, std::int64_t step, std::vector<StepStats>& stats,
                                     const std::function<void(int, Error)>& failed) {
  std::vector<caf::actor> coordinators;
  for (auto& p : actor_pipelines_) coordinators.push_back(p->coordinator());
  GroupStepHooks hooks;
  hooks.abort = [&] {
    for (auto& w : worlds_) w->abort();
    for (auto& w : stats_worlds_) w->abort();  // synchronised batch norm's groups wait in the forward
  };
  hooks.reform = [&] {
    for (auto& w : worlds_) w->reform();
    for (auto& w : stats_worlds_) w->reform();
    for (PipelineDriver* driver : drivers_)
      for (int s = 0; s < driver->num_stages(); ++s)
        if (GradientSync* g = driver->stage(s).gradient_sync()) g->reform();
  };
  hooks.failed = failed;
  hooks.name = [](int r) { return "replica " + std::to_string(r); };
  // No collective can wait longer than comm.timeout_s.
  troupe::step_group(self, step, coordinators, stats, hooks, group_round_,
                     std::chrono::milliseconds(static_cast<long long>(config_.comm.timeout_s * 1000.0)) +
                         std::chrono::seconds(1));
}

EvalStats DataParallelTrainer::evaluate() { return drivers_[0]->evaluate(); }

void DataParallelTrainer::load_weights(const std::string& path) {
  for (PipelineDriver* r : drivers_) r->load_weights(path);
}

void DataParallelTrainer::save_weights(const std::string& path) const { drivers_[0]->save_weights(path); }

void DataParallelTrainer::set_trace(TraceRecorder* trace) {
  if (!actor_pipelines_.empty()) {
    actor_pipelines_[0]->set_trace(trace);  // tracks "stage s" of replica 0, and each step's window
    return;
  }
  for (int s = 0; s < drivers_[0]->num_stages(); ++s)
    drivers_[0]->stage(s).set_trace(trace, trace->track("stage " + std::to_string(s)));
}

std::vector<supervision::Restart> DataParallelTrainer::restarts() const {
  std::vector<supervision::Restart> all;
  if (recovery_) all = recovery_->restarts();
  for (const auto& p : actor_pipelines_) all.insert(all.end(), p->restarts().begin(), p->restarts().end());
  return all;
}

CommStats DataParallelTrainer::last_step_comm() const {
  CommStats total;
  for (int s = 0; s < drivers_[0]->num_stages(); ++s)
    if (GradientSync* g = drivers_[0]->stage(s).gradient_sync()) {
      total.bytes_sent += g->last_step_stats().bytes_sent;
      total.bytes_uncompressed += g->last_step_stats().bytes_uncompressed;
      total.buckets += g->last_step_stats().buckets;
    }
  return total;
}

std::size_t DataParallelTrainer::optimizer_state_bytes(int r) const {
  std::size_t bytes = 0;
  const PipelineDriver& d = *drivers_.at(static_cast<std::size_t>(r));
  for (int s = 0; s < d.num_stages(); ++s) bytes += d.stage(s).optimizer_state_bytes();
  return bytes;
}

}  // namespace troupe
