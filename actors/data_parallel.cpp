// DataParallelTrainer: replicas built, wired per stage over in-process groups, stepped on one thread each.
#include "actors/data_parallel.h"

#include "actors/actor_system.h"

#include <mutex>
#include <optional>
#include <thread>

#include "actors/protocol.h"
#include "actors/replica_actor.h"
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
  o.compression = comm::parse_compression_spec(config.comm.compression);
  return o;
}

namespace {
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
    actor_pipelines_.push_back(std::make_unique<ActorPipeline>(per, pipeline_options(config_, rank), actor_system_, topology));
    drivers_.push_back(&actor_pipelines_.back()->driver());
  } else {
    own_drivers_.push_back(std::make_unique<PipelineDriver>(per, pipeline_options(config_, rank)));
    drivers_.push_back(own_drivers_.back().get());
  }
  PipelineDriver& driver = *drivers_.back();
  for (int s = 0; s < driver.num_stages(); ++s) {
    GradientSyncOptions options = gradient_sync_options(config_);
    if (!worlds_.empty()) options.local_group = worlds_.at(static_cast<std::size_t>(s))->local_group();
    driver.stage(s).attach_gradient_sync(std::make_unique<GradientSync>(std::move(transports.at(s)), options));
  }
  if (actors) actor_pipelines_.back()->start_gradient_exchanges();
}

DataParallelTrainer::DataParallelTrainer(const RunConfig& config, int rank,
                                         std::vector<std::unique_ptr<comm::Transport>> transports, bool actors,
                                         const plan::Topology* topology,
                                         std::vector<std::unique_ptr<comm::Transport>> stats_transports)
    : config_(config) {
  TROUPE_CHECK(rank >= 0 && rank < config.parallel.data, "rank ", rank, " of ", config.parallel.data, " replicas");
  const bool sync_stats = config.model.sync_batchnorm && config.parallel.data > 1;
  TROUPE_CHECK(static_cast<int>(stats_transports.size()) == (sync_stats ? config.parallel.pipeline : 0),
               stats_transports.size(), " statistics groups for ", config.parallel.pipeline, " stages");
  // The other replicas are processes on the same machine: share its threads with them.
  add_replica(per_replica(config, config.parallel.data), rank, std::move(transports), actors, topology);
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
  auto failed = [&](int r, Error e) {
    if (first_failed < 0) {
      first_failed = r;
      failure = std::move(e);
    }
    for (auto& w : worlds_) w->kill(r);
    for (auto& w : stats_worlds_) w->kill(r);
  };
  if (!actor_pipelines_.empty()) {
    // Every replica's actor coordinates its own step; this thread only starts them and collects.
    caf::scoped_actor self{actor_system_->get()};
    const int first = drivers_[0]->options().replica;  // 0, or this process's rank (processes form)
    for (auto& p : actor_pipelines_) self->send(p->coordinator(), proto::step_atom::value, step);
    for (int answers = 0; answers < d; ++answers)
      self->receive([&](proto::done_atom, int r, StepStats& s) { stats[static_cast<std::size_t>(r - first)] = std::move(s); },
                    [&](proto::failed_atom, int r, std::int32_t kind, std::string& report) {
                      failed(r, replica_failure(kind, report));
                    });
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
  return stats[0];  // its loss and row count are the whole batch's (losses are gathered)
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
