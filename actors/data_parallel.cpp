// DataParallelTrainer: replicas built, wired per stage over in-process groups, stepped on one thread each.
#include "actors/data_parallel.h"

#include <exception>
#include <thread>


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

void attach_gradient_syncs(PipelineDriver& driver, std::vector<std::unique_ptr<comm::Transport>> transports,
                           const GradientSyncOptions& options) {
  TROUPE_CHECK(static_cast<int>(transports.size()) == driver.num_stages(), transports.size(), " transports for ",
               driver.num_stages(), " stages");
  for (int s = 0; s < driver.num_stages(); ++s)
    driver.stage(s).attach_gradient_sync(std::make_unique<GradientSync>(std::move(transports[s]), options));
}

DataParallelTrainer::DataParallelTrainer(const RunConfig& config) : config_(config) {
  const int d = config.parallel.data;
  if (config.parallel.gradient_exchange == "ps")
    throw Error(ErrorKind::kConfig, "parallel.gradient_exchange = ps is served by the parameter-server trainer, not "
                                    "by ring/alltoall replicas");
  // The machine's threads are shared by the replicas (results do not depend on thread counts).
  RunConfig per = config;
  const int threads = config.train.threads > 0 ? config.train.threads
                                               : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  per.train.threads = std::max(1, threads / d);
  const auto timeout = std::chrono::milliseconds(static_cast<long long>(config.comm.timeout_s * 1000.0));
  for (int s = 0; s < config.parallel.pipeline; ++s) worlds_.push_back(std::make_unique<net::InprocWorld>(d, timeout));
  const GradientSyncOptions sync = gradient_sync_options(config);
  for (int r = 0; r < d; ++r) {
    replicas_.push_back(std::make_unique<PipelineDriver>(per, pipeline_options(config, r)));
    std::vector<std::unique_ptr<comm::Transport>> transports;
    for (auto& w : worlds_) transports.push_back(w->transport(r));
    attach_gradient_syncs(*replicas_.back(), std::move(transports), sync);
  }
}

DataParallelTrainer::~DataParallelTrainer() = default;

StepStats DataParallelTrainer::train_step(std::int64_t step) {
  const int d = replicas();
  std::vector<StepStats> stats(static_cast<std::size_t>(d));
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(d));
  auto run = [&](int r) {
    try {
      stats[static_cast<std::size_t>(r)] = replicas_[static_cast<std::size_t>(r)]->train_step(step);
    } catch (...) {
      errors[static_cast<std::size_t>(r)] = std::current_exception();
      for (auto& w : worlds_) w->kill(r);
    }
  };
  std::vector<std::thread> threads;
  for (int r = 1; r < d; ++r) threads.emplace_back(run, r);
  run(0);
  for (auto& t : threads) t.join();
  // The replica that failed first explains more than its peers' "rank r is dead": rethrow an error
  // that is not about a dead peer if there is one.
  std::exception_ptr first;
  for (auto& e : errors) {
    if (!e) continue;
    if (!first) first = e;
    try {
      std::rethrow_exception(e);
    } catch (const Error& err) {
      if (err.kind() != ErrorKind::kIo) std::rethrow_exception(e);
    } catch (...) {
      std::rethrow_exception(e);
    }
  }
  if (first) std::rethrow_exception(first);
  return stats[0];  // its loss and row count are the whole batch's (losses are gathered)
}

EvalStats DataParallelTrainer::evaluate() { return replicas_[0]->evaluate(); }

void DataParallelTrainer::load_weights(const std::string& path) {
  for (auto& r : replicas_) r->load_weights(path);
}

void DataParallelTrainer::save_weights(const std::string& path) const { replicas_[0]->save_weights(path); }

void DataParallelTrainer::set_trace(TraceRecorder* trace) {
  for (int s = 0; s < replicas_[0]->num_stages(); ++s)
    replicas_[0]->stage(s).set_trace(trace, trace->track("replica 0 stage " + std::to_string(s)));
}

CommStats DataParallelTrainer::last_step_comm() const {
  CommStats total;
  for (int s = 0; s < replicas_[0]->num_stages(); ++s)
    if (GradientSync* g = replicas_[0]->stage(s).gradient_sync()) {
      total.bytes_sent += g->last_step_stats().bytes_sent;
      total.bytes_uncompressed += g->last_step_stats().bytes_uncompressed;
      total.buckets += g->last_step_stats().buckets;
    }
  return total;
}

std::size_t DataParallelTrainer::optimizer_state_bytes(int r) const {
  std::size_t bytes = 0;
  const PipelineDriver& d = *replicas_.at(static_cast<std::size_t>(r));
  for (int s = 0; s < d.num_stages(); ++s) bytes += d.stage(s).optimizer_state_bytes();
  return bytes;
}

}  // namespace troupe
