// `troupe train`: validates inputs up front, trains, reports, and writes outputs atomically.
#include "cli/train_command.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "cli/progress.h"
#include "actors/actor_pipeline.h"
#include "actors/data_parallel.h"
#include "actors/ps/ps_processes.h"
#include "actors/ps/ps_trainer.h"
#include "runtime/process/replica_processes.h"
#include "net/tcp/launch.h"
#include "net/tcp/tcp_transport.h"
#include "models/device_trainer.h"
#include "models/trainer.h"
#include "runtime/config/config_loader.h"
#include "runtime/strings.h"
#include "runtime/placement.h"

namespace troupe {

namespace fs = std::filesystem;

namespace {
// Refuses to start a run whose outputs could not be written at the end.
void check_output_path(const std::string& option, const std::string& path) {
  if (path.empty()) return;
  fs::path p(path);
  fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error(ErrorKind::kUsage, option + " " + path + ": directory " + dir.string() + " does not exist");
  if (fs::is_directory(p, ec)) throw Error(ErrorKind::kUsage, option + " " + path + ": is a directory, give a file name");
}

std::string human_count(std::int64_t n) {
  if (n >= 1'000'000) return fmt::format("{:.2f}M", n / 1e6);
  if (n >= 1'000) return fmt::format("{:.1f}k", n / 1e3);
  return std::to_string(n);
}
}  // namespace

template <typename Runner>
int train_loop(Runner& trainer, const RunConfig& config, const TrainOptions& options);
int run_tcp_replicas(const RunConfig& config, const TrainOptions& options);
int run_tcp_ps(const RunConfig& config, const TrainOptions& options);
namespace {
void report_data_parallel(DataParallelTrainer& dp, const RunConfig& config);
}

namespace {

// Stage s of every replica forms one TCP group; its rendezvous listens at comm.address's port + s.
std::vector<std::string> stage_addresses(const RunConfig& config) {
  return net::consecutive_addresses("comm.address", config.comm.address, config.parallel.pipeline, "pipeline stage");
}

constexpr const char* kStageAddressesEnv = "TROUPE_STAGE_ADDRESSES";

// Failure drills (tests): TROUPE_TEST_CRASH="r:s" makes rank r die abruptly before step s, as a killed
// process would: no goodbye on its connections. -1: no drill for this rank, or a restarted one.
long long crash_step(int rank) {
  if (ps::PsProcesses::restarted()) return -1;
  if (const char* crash = std::getenv("TROUPE_TEST_CRASH"))
    if (std::string c = crash; c.rfind(std::to_string(rank) + ":", 0) == 0) return std::stoll(c.substr(c.find(':') + 1));
  return -1;
}

// A started rank's training: every step from `first` on, with the crash drill.
template <class Trainer>
void train_started_rank(Trainer& trainer, const RunConfig& config, int rank, std::int64_t first = 0) {
  const long long crash_at = crash_step(rank);
  for (std::int64_t step = first; step < config.train.steps; ++step) {
    if (step == crash_at) std::_Exit(3);
    trainer.train_step(step);
  }
}

}  // namespace

// comm.transport = tcp: every replica is a process. The process the user starts is rank 0: it binds
// one rendezvous listener per stage (so the ports are known before anyone connects), starts ranks
// 1..D-1 as copies of itself, joins the groups, and trains and reports like the in-process form. A
// spawned rank joins the groups at the addresses rank 0 put in its environment and only trains.
int run_tcp_replicas(const RunConfig& config, const TrainOptions& options) {
  const int d = config.parallel.data;
  const auto timeout = std::chrono::milliseconds(static_cast<long long>(config.comm.timeout_s * 1000.0));
  std::vector<std::unique_ptr<comm::Transport>> transports;
  if (options.rank > 0) {
    try {
      const std::vector<std::string> addresses = net::addresses_from_environment(kStageAddressesEnv);
      TROUPE_CHECK(static_cast<int>(addresses.size()) == config.parallel.pipeline, "stage addresses for ",
                   config.parallel.pipeline, " stages");
      const std::string secret = net::secret_from_environment();
      for (const std::string& address : addresses)
        transports.push_back(net::connect_tcp({.rank = options.rank, .size = d, .address = address, .secret = secret,
                                               .timeout = timeout}));
      DataParallelTrainer replica(config, options.rank, std::move(transports));
      if (!options.init_from.empty()) replica.load_weights(options.init_from);
      train_started_rank(replica, config, options.rank);
      return 0;
    } catch (const Error& e) {
      throw Error(e.kind(), "data-parallel rank " + std::to_string(options.rank) + ": " + e.what());
    }
  }

  const std::string secret = net::job_secret();
  std::string bound;
  std::vector<net::TcpListener> listeners = net::bind_listeners(stage_addresses(config), kStageAddressesEnv, bound);
  std::printf("troupe: data parallel, %d replicas as processes over tcp (rendezvous %s) x %d pipeline stages, "
              "gradient exchange %s%s, buckets of %g MiB\n",
              d, bound.c_str(), config.parallel.pipeline, std::string(name_of(config.parallel.gradient_exchange)).c_str(),
              config.parallel.zero ? " with ZeRO-1" : "", config.comm.bucket_mb);
  ReplicaProcesses ranks("/proc/self/exe", options.args, d, secret);
  for (std::size_t s = 0; s < listeners.size(); ++s)
    transports.push_back(net::connect_tcp({.rank = 0, .size = d, .address = "", .secret = secret, .timeout = timeout},
                                          std::move(listeners[s])));
  DataParallelTrainer dp(config, 0, std::move(transports));
  const int code = train_loop(dp, config, options);
  report_data_parallel(dp, config);
  const std::string failure = ranks.wait_all();
  if (!failure.empty()) throw Error(ErrorKind::kIo, "data-parallel " + failure + " (see its error above)");
  return code;
}

// comm.transport = tcp with parallel.gradient_exchange = ps: every worker is a process. The process the
// user starts is rank 0: it hosts the shard actors and worker 0, binds one rendezvous listener per other
// worker, starts workers 1..D-1 as copies of itself and answers each over its own link (ps_link.h).
int run_tcp_ps(const RunConfig& config, const TrainOptions& options) {
  const int d = config.parallel.data;
  ps::PsProcessOptions po;
  po.workers = d;
  po.address = config.comm.address;
  po.timeout = std::chrono::milliseconds(static_cast<long long>(config.comm.timeout_s * 1000.0));
  po.max_restarts = config.ps.max_restarts;
  po.args = options.args;
  if (options.rank > 0) {
    try {
      ps::PsProcesses procs(options.rank, po);
      ps::PsTrainer worker(config, procs.links());
      train_started_rank(worker, config, options.rank, worker.steps_done());
      return 0;
    } catch (const Error& e) {
      throw Error(e.kind(), "ps worker " + std::to_string(options.rank) + ": " + e.what());
    }
  }
  ps::PsProcesses procs(0, po);
  std::printf("troupe: parameter servers, %d workers as processes over tcp (rendezvous %s) x %d shards in this process, "
              "mode %s%s\n",
              d, procs.rendezvous().c_str(), config.ps.shards, std::string(name_of(config.ps.mode)).c_str(),
              config.ps.mode == PsMode::ssp ? fmt::format(" (staleness {})", config.ps.staleness).c_str() : "");
  int code = 0;
  {
    ps::PsTrainer trainer(config, procs.links());
    code = train_loop(trainer, config, options);
    if (config.train.steps > 0)
      std::printf("troupe: optimizer state %.2f MB over %d shards; %d worker restart%s\n",
                  trainer.optimizer_state_bytes() / 1e6, config.ps.shards, trainer.restarts(),
                  trainer.restarts() == 1 ? "" : "s");
  }
  const std::string failure = procs.wait_all();
  if (!failure.empty()) throw Error(ErrorKind::kIo, "parameter-server " + failure + " (see its error above)");
  return code;
}

namespace {
// What data parallelism cost on the wire and in memory, per replica, for the last step.
void report_data_parallel(DataParallelTrainer& dp, const RunConfig& config) {
  if (config.train.steps == 0) return;
  const CommStats c = dp.last_step_comm();
  std::printf("troupe: per replica and step: %.2f MB sent in %d bucket%s", c.bytes_sent / 1e6, c.buckets,
              c.buckets == 1 ? "" : "s");
  if (c.bytes_uncompressed != c.bytes_sent) std::printf(" (%.2f MB uncompressed)", c.bytes_uncompressed / 1e6);
  std::printf("; optimizer state %.2f MB on replica 0%s\n", dp.optimizer_state_bytes(0) / 1e6,
              config.parallel.zero ? " (ZeRO-1 shard)" : "");
}
}  // namespace

int run_train(const TrainOptions& options) {
  std::vector<std::string> sets = options.sets;
  if (options.steps) sets.push_back("train.steps=" + std::to_string(*options.steps));
  if (options.seed) sets.push_back("train.seed=" + std::to_string(*options.seed));
  const RunConfig config = load_config(options.config_path, sets);
  const Placement placement = placement_for_run(config);  // a device this machine lacks stops the run here
  check_output_path("--save", options.save_path);
  check_output_path("--dump-losses", options.dump_losses);
  check_output_path("--trace", options.trace_path);
  if (!options.init_from.empty() && !fs::is_regular_file(options.init_from))
    throw Error(ErrorKind::kUsage, "--init-from " + options.init_from + ": no such file");
  if (options.print_config) std::printf("%s", config_to_toml(config).c_str());

  const ParallelConfig& par = config.parallel;
  if (par.gradient_exchange == GradientExchange::ps && par.data > 1 && config.comm.transport == TransportKind::tcp) return run_tcp_ps(config, options);
  if (par.gradient_exchange == GradientExchange::ps) {  // worker threads against parameter-server actors (actors/ps/)
    ps::PsTrainer trainer(config);
    std::printf("troupe: parameter servers, %d workers (threads) x %d shards, mode %s%s\n", par.data, config.ps.shards,
                std::string(name_of(config.ps.mode)).c_str(), config.ps.mode == PsMode::ssp ? fmt::format(" (staleness {})", config.ps.staleness).c_str() : "");
    const int code = train_loop(trainer, config, options);
    if (config.train.steps > 0)
      std::printf("troupe: optimizer state %.2f MB over %d shards\n", trainer.optimizer_state_bytes() / 1e6, config.ps.shards);
    return code;
  }
  if (par.data > 1 && config.comm.transport == TransportKind::tcp) return run_tcp_replicas(config, options);
  if (par.data > 1) {
    DataParallelTrainer dp(config);
    std::printf("troupe: data parallel, %d replicas (threads) x %d pipeline stages, gradient exchange %s%s, "
                "buckets of %g MiB\n",
                par.data, par.pipeline, std::string(name_of(par.gradient_exchange)).c_str(), par.zero ? " with ZeRO-1" : "",
                config.comm.bucket_mb);
    const int code = train_loop(dp, config, options);
    report_data_parallel(dp, config);
    return code;
  }
  if (par.pipeline > 1 || par.microbatches > 1) {
    ActorPipeline pipeline(config, {par.pipeline, par.virtual_stages, par.microbatches, par.schedule, par.boundaries, false, par.credits});
    std::printf("troupe: pipeline of %d stages x %d chunks, schedule %s, %d micro-batches; partition:\n%s",
                par.pipeline, par.virtual_stages, std::string(name_of(par.schedule)).c_str(), par.microbatches,
                pipeline.describe_partition().c_str());
    return train_loop(pipeline, config, options);
  }
  if (placement.any_cuda()) {  // one whole model on one GPU (placement_for_run refused anything else)
    DeviceTrainer trainer(config, placement.stages.at(0));
    std::printf("troupe: training on %s\n", placement.stages.at(0).str().c_str());
    return train_loop(trainer, config, options);
  }
  Trainer trainer(config);
  return train_loop(trainer, config, options);
}

namespace {
std::int64_t param_count(Trainer& t) { return t.model().params().numel(); }
std::int64_t param_count(DeviceTrainer& t) { return t.num_params(); }
std::int64_t param_count(DataParallelTrainer& t) {
  std::int64_t n = 0;
  for (Param* p : t.params_in_order()) n += p->value.numel();
  return n;
}
std::int64_t param_count(ps::PsTrainer& t) { return t.param_count(); }
std::int64_t param_count(ActorPipeline& d) {
  std::int64_t n = 0;
  for (Param* p : d.params_in_order()) n += p->value.numel();
  return n;
}
}  // namespace

// The loop shared by the single-device trainer and the pipeline: both train, evaluate and move weights.
template <typename Runner>
int train_loop(Runner& trainer, const RunConfig& config, const TrainOptions& options) {
  if (!options.init_from.empty()) trainer.load_weights(options.init_from);
  TraceRecorder trace(!options.trace_path.empty());
  if (trace.enabled()) trainer.set_trace(&trace);
  const auto& m = config.model;
  const std::string shape = m.kind == ModelKind::gpt
                                ? fmt::format("n_layer={} n_head={} n_embd={} block_size={} vocab={}", m.n_layer, m.n_head,
                                              m.n_embd, m.block_size, m.vocab_size)
                                : fmt::format("hidden={}", fmt::join(m.mlp_hidden, ","));
  std::printf("troupe: %s (%s), %s parameters, %s\n", std::string(name_of(m.kind)).c_str(), shape.c_str(),
              human_count(param_count(trainer)).c_str(), trainer.dataset().describe().c_str());
  std::printf("troupe: %s lr=%g, batch %d, %lld steps, %d threads%s%s\n", std::string(name_of(config.optim.kind)).c_str(),
              config.optim.lr_or_default(), config.train.batch_size, static_cast<long long>(config.train.steps),
              trainer.backend().threads(), config.train.deterministic ? ", deterministic" : "",
              options.init_from.empty() ? "" : (", weights from " + options.init_from).c_str());
  std::fflush(stdout);

  std::FILE* dump = nullptr;
  const std::string dump_tmp = options.dump_losses + ".partial";
  if (!options.dump_losses.empty()) {
    dump = std::fopen(dump_tmp.c_str(), "w");
    if (!dump) throw Error(ErrorKind::kIo, "--dump-losses " + options.dump_losses + ": cannot write " + dump_tmp);
  }

  ProgressReporter progress(stdout, config.train.steps);
  const auto start = std::chrono::steady_clock::now();
  double last_loss = 0.0, tokens = 0.0, compute_s = 0.0;
  for (std::int64_t step = 0; step < config.train.steps; ++step) {
    const StepStats s = trainer.train_step(step);
    last_loss = s.loss;
    if (step > 0 || config.train.steps == 1) {  // step 0 includes first-touch allocation
      tokens += s.tokens_per_s * s.seconds;
      compute_s += s.seconds;
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    progress.step(step, s.loss, s.lr, s.tokens_per_s, elapsed);
    if (dump) {
      std::fprintf(dump, "{\"step\": %lld, \"loss\": %.9g, \"lr\": %.9g, \"tokens_per_s\": %.1f}\n",
                   static_cast<long long>(step), s.loss, s.lr, s.tokens_per_s);
      std::fflush(dump);
    }
    const bool last = step + 1 == config.train.steps;
    if (last || (config.train.eval_every > 0 && (step + 1) % config.train.eval_every == 0)) {
      const EvalStats e = trainer.evaluate();
      std::string line = fmt::format("eval after step {}: validation loss {:.4f}", step + 1, e.loss);
      if (m.kind == ModelKind::mlp) line += fmt::format(", test accuracy {:.2f}%", 100.0 * e.accuracy);
      progress.message(line);
    }
  }
  progress.finish();
  if (dump) {
    std::fclose(dump);
    fs::rename(dump_tmp, options.dump_losses);
  }
  if (config.train.steps > 0) {
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("troupe: done in %.1fs, final train loss %.4f, %.0f %s/s\n", wall, last_loss,
                compute_s > 0 ? tokens / compute_s : 0.0, m.kind == ModelKind::gpt ? "tokens" : "samples");
  }
  if (trace.enabled()) {
    trace.write_chrome_trace(options.trace_path);
    const ParallelConfig& par = config.parallel;
    const double ideal = par.pipeline > 1 ? theoretical_bubble(par.schedule, par.pipeline, par.microbatches,
                                                               par.virtual_stages)
                                          : 0.0;
    std::printf("troupe: trace written to %s; bubble (idle share of step time) per actor, schedule's ideal %.1f%%:\n",
                options.trace_path.c_str(), 100.0 * ideal);
    for (const auto& t : trace.track_stats()) {
      if (t.communication) {  // overlaps compute by design: its idle time is not a bubble
        std::printf("  %-10s communicating %5.1f%% of step time\n", t.name.c_str(), 100.0 * (1.0 - t.bubble));
      } else {
        std::printf("  %-10s measured %5.1f%%\n", t.name.c_str(), 100.0 * t.bubble);
      }
    }
  }
  if (!options.save_path.empty()) {
    trainer.save_weights(options.save_path);
    std::printf("troupe: weights written to %s\n", options.save_path.c_str());
  }
  return 0;
}

}  // namespace troupe
