// The runner: the Topology of a configuration, and the one dispatch from a Topology to the trainer
// that runs it (threads, actors or processes).
#include "actors/runner.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "actors/actor_pipeline.h"
#include "actors/data_parallel.h"
#include "actors/process_recovery.h"
#include "actors/ps/ps_processes.h"
#include "actors/ps/ps_trainer.h"
#include "actors/recommender_job.h"
#include "actors/tensor_parallel.h"
#include "actors/tensor_pipelines.h"
#include "actors/tensor_parallel_processes.h"
#include "models/device_trainer.h"
#include "models/model.h"
#include "net/tcp/address.h"
#include "net/tcp/launch.h"
#include "net/routed/routed_transport.h"
#include "net/shm/shm_transport.h"
#include "net/tcp/secret_source.h"
#include "net/tcp/tcp_transport.h"
#include "runtime/checkpoint/checkpoint_store.h"
#include "runtime/comm/hierarchical.h"
#include "runtime/config/config_loader.h"
#include "runtime/placement.h"
#include "runtime/plan/resources.h"
#include "runtime/process/replica_processes.h"
#include "runtime/supervision/fault_plan.h"
#include "runtime/supervision/supervision_tree.h"

namespace troupe {

namespace {

// ---- the plan ------------------------------------------------------------------------------------

// The layers the planner partitions: the model's stack, or the recommender as one (it has no stages).
plan::LayerInfo layers_of(const RunConfig& config) {
  if (is_recommender(config.model.kind)) return plan::LayerInfo{.names = {"deepfm"}, .costs = {1.0}};
  return layer_info(make_layer_specs(config.model, config.train.seed));
}

plan::Topology topology_for(const RunConfig& config, const Placement& placement) {
  return plan::make_topology(config, layers_of(config), placement.stages);
}

std::chrono::milliseconds comm_timeout(const RunConfig& config) {
  return std::chrono::milliseconds(static_cast<long long>(config.comm.timeout_s * 1000.0));
}

// ---- the number of parameters, per trainer --------------------------------------------------------

std::int64_t count_params(Trainer& t) { return t.model().params().numel(); }
std::int64_t count_params(DeviceTrainer& t) { return t.num_params(); }
std::int64_t count_params(ps::PsTrainer& t) { return t.param_count(); }
std::int64_t count_params(TensorParallelTrainer& t) { return t.param_count(); }
std::int64_t count_params(TensorPipelineTrainer& t) { return t.param_count(); }
template <class T>  // DataParallelTrainer, ActorPipeline: every stage's parameters in layer order
std::int64_t count_params(T& t) {
  std::int64_t n = 0;
  for (Param* p : t.params_in_order()) n += p->value.numel();
  return n;
}

// ---- the training state, per trainer (runtime/checkpoint/training_state.h) ------------------------

TrainingState state_of(Trainer& t, std::int64_t steps_done) { return t.training_state(steps_done); }
void restore(Trainer& t, const TrainingState& s, const std::string& source) { t.restore_training_state(s, source); }

TrainingState state_of(ActorPipeline& t, std::int64_t steps_done) {
  TrainingState s;
  s.step = steps_done;
  t.driver().gather_params_into(s);
  t.driver().gather_optimizer_state_into(s.optimizer, true);
  return s;
}
void restore(ActorPipeline& t, const TrainingState& s, const std::string& source) {
  t.driver().restore_training_state(s, source);
}

// Replicas are bitwise equal, so parameters come from replica 0; optimizer state too, unless ZeRO-1
// spreads it over the replicas (each parameter's on its owner alone): then from every replica.
TrainingState state_of(DataParallelTrainer& t, std::int64_t steps_done) {
  TrainingState s;
  s.step = steps_done;
  t.replica(0).gather_params_into(s);
  const bool sharded = t.replica(0).config().parallel.zero;
  for (int r = 0; r < (sharded ? t.replicas() : 1); ++r) t.replica(r).gather_optimizer_state_into(s.optimizer, r == 0);
  return s;
}
void restore(DataParallelTrainer& t, const TrainingState& s, const std::string& source) {
  for (int r = 0; r < t.replicas(); ++r) t.replica(r).restore_training_state(s, source);
}

// Tensor shards gather whole tensors by name (any parallel.tensor restores any other).
TrainingState state_of(TensorParallelTrainer& t, std::int64_t steps_done) { return t.training_state(steps_done); }
void restore(TensorParallelTrainer& t, const TrainingState& s, const std::string& source) {
  t.restore_training_state(s, source);
}

TrainingState state_of(TensorPipelineTrainer& t, std::int64_t steps_done) { return t.training_state(steps_done); }
void restore(TensorPipelineTrainer& t, const TrainingState& s, const std::string& source) {
  t.restore_training_state(s, source);
}

// ---- jobs ------------------------------------------------------------------------------------------

// A Job over a trainer of type T. A subclass that owns what the trainer needs besides (processes,
// sockets) resets trainer_ in its destructor, so the trainer goes first, as it came last.
template <class T>
class TrainerJob : public Job {
 public:
  StepStats train_step(std::int64_t step) override {
    StepStats s = trainer_->train_step(step);
    if (s.skipped && skipped_++ == 0) first_skipped_ = s.nonfinite;
    return s;
  }
  // Steps skipped under train.on_nonfinite = skip, as a report line; empty when none.
  std::string report() override { return skipped_report(); }
  std::string skipped_report() const {
    if (skipped_ == 0) return {};
    return fmt::format("{} step{} skipped for a non-finite loss or gradient (train.on_nonfinite = skip), the first "
                       "{}\n",
                       skipped_, skipped_ == 1 ? "" : "s", first_skipped_);
  }
  EvalStats evaluate() override { return trainer_->evaluate(); }
  void load_weights(const std::string& path) override { trainer_->load_weights(path); }
  void save_weights(const std::string& path) override { trainer_->save_weights(path); }
  void set_trace(TraceRecorder* trace) override { trainer_->set_trace(trace); }
  std::string data_description() override { return trainer_->dataset().describe(); }
  int threads() override { return trainer_->backend().threads(); }
  std::int64_t parameter_count() override { return count_params(*trainer_); }
  std::string summary() override { return summary_; }
  std::string checkpoint_refusal() override {
    if constexpr (requires(T& t) { state_of(t, 0); }) {
      if constexpr (requires(T& t) { t.params_in_order(); })
        for (const Param* p : trainer_->params_in_order())
          if (!p->value.device().is_cpu())
            return "stages on a GPU (their state is not gathered to the host yet); train on the CPU";
      return {};
    }
    return Job::checkpoint_refusal();
  }
  TrainingState training_state(std::int64_t steps_done) override {
    if constexpr (requires(T& t) { state_of(t, 0); }) return state_of(*trainer_, steps_done);
    return Job::training_state(steps_done);
  }
  void restore_training_state(const TrainingState& state, const std::string& source) override {
    if constexpr (requires(T& t) { state_of(t, 0); }) restore(*trainer_, state, source);
    else Job::restore_training_state(state, source);
  }

 protected:
  std::string summary_;
  std::unique_ptr<T> trainer_;
  std::int64_t skipped_ = 0;
  std::string first_skipped_;
};

class SingleDeviceJob final : public TrainerJob<Trainer> {
 public:
  explicit SingleDeviceJob(const RunConfig& config) { trainer_ = std::make_unique<Trainer>(config); }
};

class DeviceJob final : public TrainerJob<DeviceTrainer> {
 public:
  DeviceJob(const RunConfig& config, const Device& device) {
    trainer_ = std::make_unique<DeviceTrainer>(config, device);
    summary_ = "training on " + device.str() + "\n";
  }
  std::string checkpoint_refusal() override {
    return "the single-GPU trainer (its optimizer state lives on the device and is not gathered yet; train on the "
           "CPU, or in a pipeline of GPU stages)";
  }
};

// Each restart: which actor, when, why, and how long the step took to recover.

class PipelineJob final : public TrainerJob<ActorPipeline> {
 public:
  PipelineJob(const RunConfig& config, const plan::Topology& topology) {
    const ParallelConfig& par = config.parallel;
    trainer_ = std::make_unique<ActorPipeline>(config, pipeline_options(config, 0), nullptr, &topology);
    summary_ = fmt::format("pipeline of {} stages x {} chunks, schedule {}, {} micro-batches; partition:\n{}",
                           par.pipeline, par.virtual_stages, par.schedule, par.microbatches,
                           trainer_->describe_partition());
  }
  std::vector<supervision::Restart> restarts() override { return trainer_->restarts(); }
  // Skipped steps, then each restart.
  std::string report() override {
    return skipped_report() + restarts_report(trainer_->restarts(), trainer_->driver().config().fault.max_restarts);
  }
};

class TensorParallelJob final : public TrainerJob<TensorParallelTrainer> {
 public:
  TensorParallelJob(const RunConfig& config, const plan::Topology& topology) {
    trainer_ = std::make_unique<TensorParallelTrainer>(config, nullptr, &topology);
    summary_ = fmt::format("tensor parallel, {} replica{} x {} shards (actors over the in-process transport)\n",
                           config.parallel.data, config.parallel.data == 1 ? "" : "s", config.parallel.tensor);
    max_restarts_ = config.fault.max_restarts;
  }
  std::vector<supervision::Restart> restarts() override { return trainer_->restarts(); }
  std::string report() override { return skipped_report() + restarts_report(trainer_->restarts(), max_restarts_); }

 private:
  int max_restarts_ = 0;
};

std::string data_parallel_summary(const RunConfig& config, const std::string& replicas) {
  const ParallelConfig& par = config.parallel;
  return fmt::format("data parallel, {} x {} pipeline stages, gradient exchange {}{}, buckets of {} MiB\n", replicas,
                     par.pipeline, par.gradient_exchange, par.zero ? " with ZeRO-1" : "", config.comm.bucket_mb);
}

// What one replica's gradient exchange sent in the last step: "per replica and step: 0.09 MB sent in 4 buckets".
std::string gradient_bytes_text(const CommStats& c) {
  std::string out = fmt::format("per replica and step: {:.2f} MB sent in {} bucket{}", c.bytes_sent / 1e6, c.buckets,
                                c.buckets == 1 ? "" : "s");
  if (c.bytes_uncompressed != c.bytes_sent) out += fmt::format(" ({:.2f} MB uncompressed)", c.bytes_uncompressed / 1e6);
  return out;
}

// What data parallelism cost on the wire and in memory, per replica, for the last step.
std::string data_parallel_report(DataParallelTrainer& dp, const RunConfig& config) {
  std::string out = gradient_bytes_text(dp.last_step_comm());
  out += fmt::format("; optimizer state {:.2f} MB on replica 0{}\n", dp.optimizer_state_bytes(0) / 1e6,
                     config.parallel.zero ? " (ZeRO-1 shard)" : "");
  return out;
}

// Tensor shards as the stage actors of D x T pipelines (3D parallelism).
class TensorPipelineJob final : public TrainerJob<TensorPipelineTrainer> {
 public:
  TensorPipelineJob(const RunConfig& config, const plan::Topology& topology) : config_(config) {
    const ParallelConfig& par = config.parallel;
    trainer_ = std::make_unique<TensorPipelineTrainer>(config, &topology);
    summary_ = fmt::format(
        "tensor parallel pipelines: {} replica{} x {} stage{} x {} shards (each shard of each stage a stage actor over "
        "the in-process transport), schedule {}, {} chunk{} per stage, {} micro-batches{}; partition:\n{}",
        par.data, par.data == 1 ? "" : "s", par.pipeline, par.pipeline == 1 ? "" : "s", par.tensor, par.schedule,
        par.virtual_stages, par.virtual_stages == 1 ? "" : "s", par.microbatches,
        par.data > 1 ? fmt::format(", gradient exchange {}{}", par.gradient_exchange, par.zero ? " with ZeRO-1" : "") : "",
        trainer_->pipeline(0).describe_partition());
  }
  std::vector<supervision::Restart> restarts() override { return trainer_->restarts(); }
  std::string report() override {
    const std::string restarts = restarts_report(trainer_->restarts(), config_.fault.max_restarts);
    if (config_.parallel.data == 1) return skipped_report() + restarts;
    return gradient_bytes_text(trainer_->last_step_comm()) + " (all its shards)\n" + skipped_report() + restarts;
  }

 private:
  RunConfig config_;
};

class DataParallelThreadsJob final : public TrainerJob<DataParallelTrainer> {
 public:
  DataParallelThreadsJob(const RunConfig& config, const plan::Topology& topology) : config_(config) {
    trainer_ = std::make_unique<DataParallelTrainer>(config, true, &topology);
    summary_ = data_parallel_summary(config, fmt::format("{} replicas (threads)", config.parallel.data));
  }
  std::vector<supervision::Restart> restarts() override { return trainer_->restarts(); }
  std::string report() override {
    return data_parallel_report(*trainer_, config_) + skipped_report() +
           restarts_report(trainer_->restarts(), config_.fault.max_restarts);
  }

 private:
  RunConfig config_;
};

// Stage s of every replica forms one TCP group; its rendezvous listens at comm.address's port + s.
constexpr const char* kStageAddressesEnv = "TROUPE_STAGE_ADDRESSES";

// With synchronised batch norm, stage s's replicas form a second group for the statistics, at port + p + s.
bool sync_stats_groups(const RunConfig& config) { return config.model.sync_batchnorm && config.parallel.data > 1; }

// Rendezvous groups per rank: one per stage, twice that with synchronised batch norm.
int groups_per_rank(const RunConfig& config) {
  return (sync_stats_groups(config) ? 2 : 1) * config.parallel.pipeline;
}

std::vector<std::string> stage_addresses(const RunConfig& config) {
  return net::consecutive_addresses("comm.address", config.comm.address, groups_per_rank(config),
                                    "pipeline stage (and, with model.sync_batchnorm, one per stage's statistics)");
}

// A job whose processes a launcher started (comm.world_size > 1, runtime/launch/join_spec.h): every
// process is its own rank, on any host.
bool joined(const RunConfig& config) { return config.comm.world_size > 1; }

net::TcpOptions tcp_options(const RunConfig& config, int rank, const std::string& address, const std::string& secret) {
  return {.rank = rank, .size = config.parallel.data, .address = address,
          .reach = joined(config) ? net::Reach::network : net::Reach::loopback, .interface = config.comm.interface,
          .secret = secret, .integrity = config.comm.integrity, .encrypt = config.comm.encrypt,
          .timeout = comm_timeout(config)};
}

// Rank 0 of a joined job listens on comm.interface's address, else on every interface, at
// comm.address's port (+ s for stage s).
std::vector<std::string> joined_listen_addresses(const RunConfig& config) {
  return net::consecutive_addresses("comm.address", net::tcp::rank0_listen_address(config.comm.address, config.comm.interface),
                                    groups_per_rank(config), "pipeline stage");
}

// Which ranks share a host, from the names the ranks reported in the rendezvous:
// "host a: ranks 0 1; host b: ranks 2 3".
std::string hosts_text(const std::vector<std::string>& hostnames) {
  std::vector<std::pair<std::string, std::vector<int>>> hosts;
  for (int r = 0; r < static_cast<int>(hostnames.size()); ++r) {
    auto it = std::find_if(hosts.begin(), hosts.end(), [&](const auto& h) { return h.first == hostnames[r]; });
    if (it == hosts.end()) it = hosts.insert(hosts.end(), {hostnames[r], {}});
    it->second.push_back(r);
  }
  std::string out;
  for (const auto& [name, ranks] : hosts)
    out += fmt::format("{}{} (rank{} {})", out.empty() ? "" : ", ", name, ranks.size() == 1 ? "" : "s", fmt::join(ranks, " "));
  return fmt::format("{} host{}: {}", hosts.size(), hosts.size() == 1 ? "" : "s", out);
}

// "link protection: integrity (ranks 1 2)\n": rank 0's links by level (net/tcp/link_security.h).
std::string protection_text(const net::TcpTransport& t) {
  std::vector<std::pair<net::tcp::Protection, std::vector<int>>> levels;
  for (int r = 0; r < t.size(); ++r) {
    if (r == t.rank()) continue;
    auto it = std::find_if(levels.begin(), levels.end(), [&](const auto& l) { return l.first == t.protection(r); });
    if (it == levels.end()) it = levels.insert(levels.end(), {t.protection(r), {}});
    it->second.push_back(r);
  }
  std::string out;
  for (const auto& [level, ranks] : levels)
    out += fmt::format("{}{} (rank{} {})", out.empty() ? "" : ", ", net::tcp::protection_name(level), ranks.size() == 1 ? "" : "s",
                       fmt::join(ranks, " "));
  return out.empty() ? "" : "link protection: " + out + "\n";
}

// The groups of one rank, in stage_addresses' order: every stage's gradients, then (synchronised batch
// norm) every stage's statistics.
struct RankGroups {
  std::vector<std::unique_ptr<comm::Transport>> grads, stats;
  void add(const RunConfig& config, std::unique_ptr<comm::Transport> t) {
    (static_cast<int>(grads.size()) < config.parallel.pipeline ? grads : stats).push_back(std::move(t));
  }
};

// A job a launcher started whose co-located ranks talk through shared memory (comm.same_host = shm).
bool routed(const RunConfig& config) { return joined(config) && config.comm.same_host == SameHostLinks::shm; }

// One data-parallel rank's link to its stage group: over TCP; through shared memory (comm.transport = shm,
// whose rendezvous and liveness use the same TCP options); or, in a job a launcher started, through shared
// memory to the ranks on this host and TCP to the others (net/routed). `hostnames` gets each rank's host as
// the rendezvous learned it. Rank 0 passes the listener it bound.
std::unique_ptr<comm::Transport> connect_replica(const RunConfig& config, const net::TcpOptions& tcp,
                                                 net::TcpListener* listener, std::vector<std::string>& hostnames) {
  if (routed(config)) {
    const net::ShmOptions shm{.tcp = tcp};
    auto t = listener ? net::connect_routed(shm, std::move(*listener)) : net::connect_routed(shm);
    hostnames = t->hostnames();
    return t;
  }
  if (config.comm.transport == TransportKind::shm) {
    const net::ShmOptions shm{.tcp = tcp};
    auto t = listener ? net::connect_shm(shm, std::move(*listener)) : net::connect_shm(shm);
    hostnames = t->hostnames();
    return t;
  }
  auto t = listener ? net::connect_tcp(tcp, std::move(*listener)) : net::connect_tcp(tcp);
  hostnames = t->hostnames();
  return t;
}

// How a joined job's ranks talk and sum, for rank 0's summary: "within a host through shared memory, between
// hosts over tcp; gradients summed hierarchically (in each host, across 2 hosts' leaders, back)".
std::string joined_links_text(const RunConfig& config, const std::vector<std::string>& hostnames) {
  const std::vector<int> hosts = comm::host_indices(hostnames);
  std::string out = routed(config) ? "within a host through shared memory, between hosts over tcp"
                                   : "every pair of ranks over tcp (comm.same_host = tcp)";
  if (comm::hierarchy_pays(hosts))
    out += fmt::format("; gradients summed hierarchically (in each host, across the {} hosts' leaders, back)",
                       comm::host_leaders(hosts).size());
  return out + "\n";
}

// Rank `rank`'s groups over tcp, formed again at rank 0's addresses (process_recovery.h): rank 0 accepts on
// the listeners it keeps bound for the job's life (`listeners`, one per address) and calls `while_waiting` as
// it waits for the ranks to join.
ProcessRecovery::Connect reconnect_groups(const RunConfig& config, int rank, const std::string& secret,
                                          const std::vector<std::string>& addresses,
                                          std::vector<net::TcpListener>* listeners = nullptr) {
  return [=](const std::function<void()>& while_waiting) {
    ReformedGroups groups;
    for (std::size_t i = 0; i < addresses.size(); ++i) {
      net::TcpOptions options = tcp_options(config, rank, addresses[i], secret);
      options.while_waiting = while_waiting;
      // Each process comes when its stages have stopped, which may take a step's computing: more than a
      // collective may wait.
      options.rendezvous_timeout = std::max(std::chrono::milliseconds(60'000), 4 * comm_timeout(config));
      std::unique_ptr<net::TcpTransport> t =
          rank == 0 ? net::connect_tcp_on(options, listeners->at(i)) : net::connect_tcp(options);
      net::TcpTransport* raw = t.get();
      groups.breakers.push_back([raw] { raw->abort(); });
      groups.transports.push_back(std::move(t));
    }
    return groups;
  };
}

// The groups as the trainer takes them: with recovery, each inside a ReformableTransport that outlives it.
std::vector<std::unique_ptr<comm::Transport>> reformable(std::vector<std::unique_ptr<comm::Transport>> groups) {
  for (auto& t : groups) {
    auto* tcp = dynamic_cast<net::TcpTransport*>(t.get());
    TROUPE_CHECK(tcp != nullptr, "process recovery over a transport that is not tcp");
    t = std::make_unique<comm::ReformableTransport>(std::move(t), [tcp] { tcp->abort(); });
  }
  return groups;
}

// fault.inject's rank clauses for one rank process ("kill rank R at step S", "stall rank R at step S"),
// each fired once as its step begins here. A restarted process skips those up to the step it joined at
// (the one that ended its predecessor among them).
class RankFaults {
 public:
  RankFaults(const RunConfig& config, int rank, std::int64_t joined_at = -1) {
    for (const supervision::FaultClause& c : supervision::parse_fault_plan(config.fault.inject).clauses)
      if (c.target == supervision::FaultTarget::rank && c.index == rank && c.step > joined_at) left_.push_back(c);
  }
  void before_step(std::int64_t step) {
    for (auto it = left_.begin(); it != left_.end();) {
      if (it->step != step) {
        ++it;
        continue;
      }
      const supervision::FaultAction action = it->action;
      it = left_.erase(it);
      std::fflush(stdout);
      std::fflush(stderr);
      // As a crash or the OOM killer ends a process (no goodbye), or as a hung one stands (no heartbeat).
      ::raise(action == supervision::FaultAction::stall ? SIGSTOP : SIGKILL);
    }
  }

 private:
  std::vector<supervision::FaultClause> left_;
};

// comm.transport = tcp or shm: every replica is a process. This process is rank 0: it binds one rendezvous
// listener per stage (so the ports are known before anyone connects), starts ranks 1..D-1 as copies
// of itself (unless a launcher started them: a joined job), joins the groups, and trains and reports
// like the in-process form.
class DataParallelProcessesJob final : public TrainerJob<DataParallelTrainer> {
 public:
  DataParallelProcessesJob(const RunConfig& config, const plan::Topology& topology, const std::vector<std::string>& args)
      : config_(config), topology_(topology) {
    const int d = config.parallel.data;
    const std::string secret = joined(config) || !config.comm.secret_file.empty() ? net::configured_secret(config.comm.secret_file)
                                                                                 : net::job_secret();
    std::string bound;
    std::vector<net::TcpListener> listeners;
    if (joined(config)) {
      for (const std::string& address : joined_listen_addresses(config)) {
        listeners.emplace_back(address, net::Reach::network);
        bound += (bound.empty() ? "" : ",") + listeners.back().address();
      }
    } else {
      listeners = net::bind_listeners(stage_addresses(config), kStageAddressesEnv, bound);
      // Heartbeats: a rank that hangs is found, killed and named within half of comm.timeout_s.
      ranks_ = std::make_unique<ReplicaProcesses>("/proc/self/exe", args, d, secret,
                                                  std::max(comm_timeout(config) / 2, std::chrono::milliseconds(200)));
    }
    // Restarts of rank processes (process_recovery.h) where nothing of a dead replica lives on it alone: the
    // listeners stay bound for the groups to form again.
    const bool restarts = process_restart_refusal(config, joined(config)).empty();
    RankGroups groups;
    std::vector<std::string> hostnames;
    for (std::size_t s = 0; s < listeners.size(); ++s) {
      if (restarts) {
        auto t = net::connect_tcp_on(tcp_options(config, 0, "", secret), listeners[s]);
        hostnames = t->hostnames();
        groups.add(config, std::move(t));
      } else {
        groups.add(config, connect_replica(config, tcp_options(config, 0, "", secret), &listeners[s], hostnames));
      }
    }
    for (std::size_t r = 0; r < topology_.places.size(); ++r)
      topology_.places[r].host = hostnames.at(static_cast<std::size_t>(topology_.places[r].process));
    // How rank 0's links protect their frames: shown where it is not the loopback default.
    std::string links;
    // A multi-host job's routed transport protects its TCP mesh (the links between hosts).
    const comm::Transport* front = groups.grads.front().get();
    if (auto* routed = dynamic_cast<const net::RoutedTransport*>(front)) front = &routed->far_transport();
    if (auto* t = dynamic_cast<const net::TcpTransport*>(front);
        t && (joined(config) || config.comm.integrity == IntegrityPolicy::on || config.comm.encrypt)) {
      links = protection_text(*t);
    }
    std::unique_ptr<ProcessRecovery> recovery;
    if (restarts) {
      listeners_ = std::move(listeners);
      recovery = std::make_unique<ProcessRecovery>(
          config, 0,
          reconnect_groups(config, 0, secret, net::addresses_from_environment(kStageAddressesEnv), &listeners_),
          ranks_.get());
      groups.grads = reformable(std::move(groups.grads));
    }
    trainer_ = std::make_unique<DataParallelTrainer>(config, 0, std::move(groups.grads), true, &topology_,
                                                     std::move(groups.stats), std::move(recovery));
    summary_ = data_parallel_summary(
        config, joined(config) ? fmt::format("{} replicas as processes a launcher started (rendezvous {})", d, bound)
                               : fmt::format("{} replicas as processes over {} (rendezvous {})", d,
                                           config.comm.transport == TransportKind::shm ? "shared memory" : "tcp", bound));
    if (joined(config)) summary_ += fmt::format("ranks on {}\n{}", hosts_text(hostnames), joined_links_text(config, hostnames));
    summary_ += links;
  }
  ~DataParallelProcessesJob() override { trainer_.reset(); }  // its links first, then the processes
  std::string report() override {
    finish_together();  // every restart the ranks made reached rank 0, with its times, before it is listed
    return data_parallel_report(*trainer_, config_) + skipped_report() +
           restarts_report(trainer_->restarts(), config_.fault.max_restarts);
  }
  std::vector<supervision::Restart> restarts() override {
    if (trainer_->recovery()) trainer_->recovery()->collect_forwarded();
    return trainer_->restarts();
  }
  // A step that fails because a rank hung names that rank, not the neighbour whose link broke first.
  StepStats train_step(std::int64_t step) override {
    faults_.before_step(step);
    try {
      return TrainerJob::train_step(step);
    } catch (const Error& e) {
      // With fault.max_restarts > 0 the user expects a restart: say why there was none.
      const std::string refusal = process_restart_refusal(config_, joined(config_));
      const std::string why = config_.fault.max_restarts > 0 && !refusal.empty()
                                  ? "\nrank processes are not restarted with " + refusal + "; the job stops"
                                  : std::string();
      const std::string hung = ranks_ ? ranks_->hung() : std::string();
      if (hung.empty() && why.empty()) throw;
      const std::string seen = e.what();
      if (hung.empty()) throw Error(e.kind(), seen + why);
      throw Error(ErrorKind::kIo, "data-parallel " + hung + "; rank 0's step " + std::to_string(step) +
                                      " failed with it: " + seen.substr(0, seen.find('\n')) + why);
    }
  }
  void finish() override {
    if (!ranks_) return;  // a launcher started the other ranks; it waits for them
    finish_together();
    const std::string failure = ranks_->wait_all();
    if (const std::string hung = ranks_->hung(); !hung.empty()) throw Error(ErrorKind::kIo, "data-parallel " + hung);
    if (!failure.empty()) throw Error(ErrorKind::kIo, "data-parallel " + failure + " (see its error above)");
  }

 private:
  RunConfig config_;
  plan::Topology topology_;  // with every rank's host as reported
  std::unique_ptr<ReplicaProcesses> ranks_;
  std::vector<net::TcpListener> listeners_;  // kept bound while rank processes may be restarted
  RankFaults faults_{config_, 0};
  bool together_ = false;  // finish_together ran

  // Every rank has run every step (one that died in the last step restarted) before any leaves; by then each
  // rank's reports of its own restarts (sent before it said it was done) are in rank 0's hands: taken.
  void finish_together() {
    if (!ranks_ || !trainer_->recovery() || together_) return;
    together_ = true;
    trainer_->finish_together();
    trainer_->recovery()->collect_forwarded();
  }
};

std::string ps_mode_text(const RunConfig& config) {
  return fmt::format("mode {}{}", config.ps.mode,
                     config.ps.mode == PsMode::ssp ? fmt::format(" (staleness {})", config.ps.staleness) : "");
}

constexpr const char* kPsRefusal =
    "parameter-server runs (their optimizer state lives in the shard actors); use parallel.gradient_exchange = ring "
    "or alltoall";

// Worker threads against parameter-server actors (actors/ps/).
class PsThreadsJob final : public TrainerJob<ps::PsTrainer> {
 public:
  explicit PsThreadsJob(const RunConfig& config) : shards_(config.ps.shards), max_restarts_(config.fault.max_restarts) {
    trainer_ = std::make_unique<ps::PsTrainer>(config);
    summary_ = fmt::format("parameter servers, {} workers (threads) x {} shards, {}\n", config.parallel.data,
                           config.ps.shards, ps_mode_text(config));
  }
  std::string checkpoint_refusal() override { return kPsRefusal; }
  std::string report() override {
    return fmt::format("optimizer state {:.2f} MB over {} shards\n", trainer_->optimizer_state_bytes() / 1e6, shards_) +
           restarts_report(trainer_->restart_log(), max_restarts_);
  }
  std::vector<supervision::Restart> restarts() override { return trainer_->restart_log(); }

 private:
  int shards_;
  int max_restarts_;
};

ps::PsProcessOptions ps_process_options(const RunConfig& config, const std::vector<std::string>& args) {
  ps::PsProcessOptions po;
  po.workers = config.parallel.data;
  po.address = config.comm.address;
  po.timeout = std::chrono::milliseconds(static_cast<long long>(ps::ps_wait_s(config) * 1000.0));
  po.max_restarts = config.ps.max_restarts;
  // Heartbeats: a worker that hangs is found, killed and restarted within half of comm.timeout_s, before the
  // shards' wait for its push times out and fails the healthy workers instead.
  po.heartbeat_limit = std::max(comm_timeout(config) / 2, std::chrono::milliseconds(200));
  po.args = args;
  return po;
}

// comm.transport = tcp with parameter servers: every worker is a process. This process is rank 0: it
// hosts the shard actors and worker 0, binds one rendezvous listener per other worker, starts workers
// 1..D-1 as copies of itself and answers each over its own link (ps_link.h).
class PsProcessesJob final : public TrainerJob<ps::PsTrainer> {
 public:
  PsProcessesJob(const RunConfig& config, const std::vector<std::string>& args)
      : config_(config), shards_(config.ps.shards),
        procs_(std::make_unique<ps::PsProcesses>(0, ps_process_options(config, args))) {
    trainer_ = std::make_unique<ps::PsTrainer>(config, procs_->links());
    summary_ = fmt::format("parameter servers, {} workers as processes over tcp (rendezvous {}) x {} shards in this "
                           "process, {}\n",
                           config.parallel.data, procs_->rendezvous(), config.ps.shards, ps_mode_text(config));
  }
  ~PsProcessesJob() override { trainer_.reset(); }  // its links first, then the processes
  std::string checkpoint_refusal() override { return kPsRefusal; }
  std::string report() override {
    const int restarts = trainer_->restarts();
    return fmt::format("optimizer state {:.2f} MB over {} shards; {} worker restart{}\n",
                       trainer_->optimizer_state_bytes() / 1e6, shards_, restarts, restarts == 1 ? "" : "s") +
           restarts_report(trainer_->restart_log(), 0,
                           fmt::format("fault.max_restarts = {} for worker actors, ps.max_restarts = {} for worker "
                                       "processes",
                                       config_.fault.max_restarts, config_.ps.max_restarts));
  }
  std::vector<supervision::Restart> restarts() override { return trainer_->restart_log(); }
  StepStats train_step(std::int64_t step) override {
    faults_.before_step(step);
    return TrainerJob::train_step(step);
  }
  void finish() override {
    trainer_.reset();  // closes the links: the workers see the end of the run
    const std::string failure = procs_->wait_all();
    if (!failure.empty()) throw Error(ErrorKind::kIo, "parameter-server " + failure + " (see its error above)");
  }

 private:
  RunConfig config_;
  int shards_;
  std::unique_ptr<ps::PsProcesses> procs_;
  RankFaults faults_{config_, 0};
};

// ---- started ranks ----------------------------------------------------------------------------------

// Failure drills (tests): TROUPE_TEST_CRASH="r:s" makes rank r die abruptly before step s, as a killed
// process would: no goodbye on its connections. -1: no drill for this rank, or a restarted one.
long long crash_step(int rank) {
  if (ps::PsProcesses::restarted() || std::getenv(kRejoinEnv)) return -1;
  if (const char* crash = std::getenv("TROUPE_TEST_CRASH"))
    if (std::string c = crash; c.rfind(std::to_string(rank) + ":", 0) == 0) return std::stoll(c.substr(c.find(':') + 1));
  return -1;
}

// A started rank's training: every step from `first` on, with the crash drill. A data-parallel replica
// whose group re-formed around another step (process_recovery.h) goes on after the step it ran.
template <class T>
void train_started_rank(T& trainer, const RunConfig& config, int rank, std::int64_t first = 0,
                        RankFaults* faults = nullptr) {
  const long long crash_at = crash_step(rank);
  for (std::int64_t step = first; step < config.train.steps; ++step) {
    if (step == crash_at) std::_Exit(3);
    if (faults) faults->before_step(step);
    trainer.train_step(step);
    if constexpr (requires { trainer.last_step_run(); }) step = trainer.last_step_run();
  }
}

}  // namespace

std::string restarts_report(const std::vector<supervision::Restart>& r, int max_restarts,
                            const std::string& limits) {
  std::string out;
  if (!r.empty())
    out += fmt::format("{} restart{} ({}):\n", r.size(), r.size() == 1 ? "" : "s",
                       limits.empty() ? fmt::format("fault.max_restarts = {}", max_restarts) : limits);
  for (const supervision::Restart& x : r)
    out += fmt::format("  {} {}: {}; re-run {:.3f} s after, recovered (the step done) {:.3f} s after\n", x.child,
                       x.step >= 0 ? fmt::format("in step {}", x.step) : std::string("between steps"), x.cause,
                       x.restarted_s, x.recovery_s);
  return out;
}

TrainingState Job::training_state(std::int64_t) {
  throw Error(ErrorKind::kConfig, "checkpoints are not built yet for " + checkpoint_refusal());
}
void Job::restore_training_state(const TrainingState&, const std::string&) {
  throw Error(ErrorKind::kConfig, "resuming is not built yet for " + checkpoint_refusal());
}

plan::Topology plan_run(const RunConfig& config) {
  validate(config);
  plan::Topology topology = topology_for(config, placement_for_run(config));
  // Before any tensor or thread exists: a run the machine cannot hold is a config error, not a bad_alloc.
  plan::check_resources(config, topology, static_cast<int>(std::thread::hardware_concurrency()),
                        plan::available_memory_bytes());
  return topology;
}

std::string describe_plan(const RunConfig& config) {
  validate(config);
  const plan::Topology topology = topology_for(config, placement_for_run(config));
  // A recommender's sparse tables live on parameter servers: no tensor shards to size.
  const std::string shard_memory = is_recommender(config.model.kind) ? "" : plan::describe_shard_memory(config, topology);
  return plan::describe(topology, layers_of(config)) + shard_memory + "supervision:\n" + supervision::describe(supervision::make_supervision_tree(topology));
}

std::unique_ptr<Job> launch(const RunConfig& config, const LaunchOptions& options) {
  validate(config);
  const Placement placement = placement_for_run(config);  // a device this machine lacks stops the run here
  const plan::Topology topology = topology_for(config, placement);
  plan::check_resources(config, topology, static_cast<int>(std::thread::hardware_concurrency()),
                        plan::available_memory_bytes());
  const bool processes = topology.processes() > 1;
  if (processes && options.args.empty())
    throw Error(ErrorKind::kConfig,
                fmt::format("comm.transport = {} with parallel.data = {}{}: its ranks are processes started as copies "
                            "of the troupe program, which an application embedding troupe is not; use "
                            "comm.transport = inproc (ranks as threads, the same results) or run troupe train",
                            config.comm.transport, config.parallel.data,
                            config.parallel.tensor > 1 ? fmt::format(", parallel.tensor = {}", config.parallel.tensor)
                                                       : std::string()));
  if (is_recommender(config.model.kind)) {
    auto faults = std::make_shared<RankFaults>(config, 0);
    return launch_recommender(config, processes, ps_process_options(config, options.args),
                              [faults](std::int64_t step) { faults->before_step(step); });
  }
  if (topology.servers) {
    if (processes) return std::make_unique<PsProcessesJob>(config, options.args);
    return std::make_unique<PsThreadsJob>(config);
  }
  if (topology.size(plan::Axis::tensor) > 1) {
    if (topology.tensor_pipelines) return std::make_unique<TensorPipelineJob>(config, topology);
    if (processes) return launch_tensor_parallel_processes(config, topology, options.args);
    return std::make_unique<TensorParallelJob>(config, topology);
  }
  if (topology.size(plan::Axis::data) > 1) {
    if (processes) return std::make_unique<DataParallelProcessesJob>(config, topology, options.args);
    return std::make_unique<DataParallelThreadsJob>(config, topology);
  }
  if (topology.size(plan::Axis::pipe) > 1 || topology.microbatches > 1)
    return std::make_unique<PipelineJob>(config, topology);
  // One whole model on one GPU (placement_for_run refused anything else with CUDA stages).
  if (placement.any_cuda()) return std::make_unique<DeviceJob>(config, placement.stages.at(0));
  return std::make_unique<SingleDeviceJob>(config);
}

void run_started_rank(const RunConfig& config, int rank, const std::string& init_from, const std::string& resume_from) {
  if (config.parallel.tensor > 1)  // every tensor shard a process (actors/tensor_parallel_processes.h)
    return run_tensor_shard_process(config, topology_for(config, placement_for_run(config)), rank, crash_step(rank));
  const bool ps = config.parallel.gradient_exchange == GradientExchange::ps;
  try {
    if (is_recommender(config.model.kind)) {
      // Made at the first step: a restarted worker skips the clauses up to the step it resumes at.
      std::unique_ptr<RankFaults> faults;
      run_recommender_rank(config, rank, ps_process_options(config, {}), [&](std::int64_t step) {
        if (!faults) faults = std::make_unique<RankFaults>(config, rank, ps::PsProcesses::restarted() ? step : -1);
        faults->before_step(step);
      });
      return;
    }
    if (ps) {
      ps::PsProcesses procs(rank, ps_process_options(config, {}));
      ps::PsTrainer worker(config, procs.links());
      // A restarted worker resumes at the first step it had not pushed, and skips the clauses up to it.
      RankFaults faults(config, rank, ps::PsProcesses::restarted() ? worker.steps_done() : -1);
      train_started_rank(worker, config, rank, worker.steps_done(), &faults);
      return;
    }
    RankGroups groups;
    const std::vector<std::string> addresses =
        joined(config) ? stage_addresses(config) : net::addresses_from_environment(kStageAddressesEnv);
    TROUPE_CHECK(static_cast<int>(addresses.size()) == groups_per_rank(config), addresses.size(),
                 " stage addresses for ", config.parallel.pipeline, " stages");
    const std::string secret = net::configured_secret(config.comm.secret_file);
    std::vector<std::string> hostnames;
    for (const std::string& address : addresses) {
      groups.add(config, connect_replica(config, tcp_options(config, rank, address, secret), nullptr, hostnames));
    }
    plan::Topology topology = topology_for(config, placement_for_run(config));
    for (plan::Place& place : topology.places) place.host = hostnames.at(static_cast<std::size_t>(place.process));
    std::unique_ptr<ProcessRecovery> recovery;
    if (process_restart_refusal(config, joined(config)).empty()) {
      recovery = std::make_unique<ProcessRecovery>(config, rank, reconnect_groups(config, rank, secret, addresses), nullptr);
      groups.grads = reformable(std::move(groups.grads));
    }
    const bool rejoining = recovery && std::getenv(kRejoinEnv);
    DataParallelTrainer replica(config, rank, std::move(groups.grads), true, &topology, std::move(groups.stats),
                                std::move(recovery));
    if (rejoining) {  // rank 0 restarted this process: its state comes live from rank 0
      const std::int64_t joined_at = replica.rejoin();
      RankFaults faults(config, rank, joined_at);
      for (std::int64_t from = joined_at; from < config.train.steps; from = replica.finish_together())
        train_started_rank(replica, config, rank, from, &faults);
      return;
    }
    if (!init_from.empty()) replica.load_weights(init_from);
    std::int64_t first = 0;
    if (!resume_from.empty()) {
      const LoadedCheckpoint checkpoint = read_checkpoint(resume_from);
      restore(replica, checkpoint.state, checkpoint.path);
      first = checkpoint.state.step;
    }
    RankFaults faults(config, rank);
    train_started_rank(replica, config, rank, first, &faults);
    // Every rank has run every step before any leaves (a peer that died in the last step re-runs it).
    if (replica.recovery())
      for (std::int64_t from = replica.finish_together(); from < config.train.steps; from = replica.finish_together())
        train_started_rank(replica, config, rank, from, &faults);
  } catch (const Error& e) {
    throw Error(e.kind(), (ps ? "ps worker " : "data-parallel rank ") + std::to_string(rank) + ": " + e.what());
  }
}

}  // namespace troupe
