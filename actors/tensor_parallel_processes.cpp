// Tensor shards as processes: the world's rendezvous, one shard per process run by its actor, rank 0's commands.
#include "actors/tensor_parallel_processes.h"

#include <chrono>
#include <cstdlib>
#include <exception>
#include <functional>
#include <optional>

#include <caf/all.hpp>
#include <fmt/format.h>

#include "actors/actor_system.h"
#include "actors/message_poll.h"
#include "actors/tensor_shard_actor.h"
#include "actors/tensor_shard_commands.h"
#include "net/shm/shm_transport.h"
#include "net/tcp/launch.h"
#include "net/tcp/secret_source.h"
#include "net/tcp/tcp_transport.h"
#include "runtime/checkpoint/checkpoint_store.h"
#include "runtime/comm/subgroup_transport.h"
#include "runtime/process/replica_processes.h"

namespace troupe {

namespace {

// Rank 0's rendezvous address, for the rank processes it starts.
constexpr const char* kTensorAddressEnv = "TROUPE_TENSOR_ADDRESS";

std::chrono::milliseconds comm_timeout(const RunConfig& config) {
  return std::chrono::milliseconds(static_cast<long long>(config.comm.timeout_s * 1000.0));
}

// This rank's links to every rank of the job, and how to break them at once (a shard that failed).
struct World {
  std::unique_ptr<comm::Transport> transport;
  std::function<void()> abort;
};

// Joins the world of all D x T ranks over tcp, or shared memory (whose rendezvous and liveness are the
// same TCP links). Rank 0 passes the listener it bound before starting the others.
World connect_world(const RunConfig& config, int rank, const std::string& secret, const std::string& address,
                    net::TcpListener* listener) {
  const net::TcpOptions tcp{.rank = rank, .size = config.parallel.data * config.parallel.tensor, .address = address,
                            .reach = net::Reach::loopback, .secret = secret, .timeout = comm_timeout(config)};
  if (config.comm.transport == TransportKind::shm) {
    const net::ShmOptions shm{.tcp = tcp};
    std::unique_ptr<net::ShmTransport> t = listener ? net::connect_shm(shm, std::move(*listener)) : net::connect_shm(shm);
    net::ShmTransport* raw = t.get();
    return {std::move(t), [raw] { raw->abort(); }};
  }
  std::unique_ptr<net::TcpTransport> t = listener ? net::connect_tcp(tcp, std::move(*listener)) : net::connect_tcp(tcp);
  net::TcpTransport* raw = t.get();
  return {std::move(t), [raw] { raw->abort(); }};
}

// One rank's shard: its tensor and data groups as views of the world, its Trainer, and the detached
// tensor-shard actor that runs it.
class ShardProcess {
 public:
  ShardProcess(const RunConfig& config, const plan::Topology& topology, int rank, World world)
      : world_(std::move(world)) {
    tensor_ = std::make_unique<comm::SubgroupTransport>(*world_.transport, topology.group_of(rank, plan::Axis::tensor));
    if (topology.size(plan::Axis::data) > 1)
      data_ = std::make_unique<comm::SubgroupTransport>(*world_.transport, topology.group_of(rank, plan::Axis::data));
    trainer_ = std::make_unique<Trainer>(config, comm::TensorGroup{tensor_.get()}, data_.get());
    system_ = std::make_unique<ActorSystem>();
    actor_ = system_->get().spawn<caf::detached>(tensor_shard_actor, trainer_.get(), world_.abort, false);
    poll_ = std::chrono::microseconds(config.comm.poll_us);
  }
  ~ShardProcess() {
    caf::anon_send_exit(actor_, caf::exit_reason::user_shutdown);
    caf::scoped_actor self(system_->get());
    self->wait_for(actor_);
  }

  comm::Transport& world() { return *world_.transport; }
  Trainer& trainer() { return *trainer_; }

  // Asks the shard actor and waits for its answer; its failure is rethrown as the troupe::Error it was.
  template <class R, class... Ts>
  R ask(Ts... request) {
    caf::scoped_actor self(system_->get());
    R answer{};
    std::optional<Error> failure;
    auto pending = self->request(actor_, caf::infinite, request...);
    poll_for_replies(self.ptr(), 1, poll_);
    pending.receive([&](R& r) { answer = std::move(r); },
                 [&](caf::error& e) {
                   const caf::message& ctx = e.context();
                   if (ctx.size() == 2 && ctx.match_element<std::int32_t>(0) && ctx.match_element<std::string>(1))
                     failure = Error(static_cast<ErrorKind>(ctx.get_as<std::int32_t>(0)), ctx.get_as<std::string>(1));
                   else
                     failure = Error(ErrorKind::kInternal, "tensor-shard actor: " + system_->get().render(e));
                 });
    if (failure) throw *failure;
    return answer;
  }

  // A command from rank 0, run on this shard (its answer is rank 0's to report).
  void run(const ShardCommand& c) {
    switch (c.op) {
      case ShardOp::step: ask<StepStats>(proto::step_atom::value, c.arg); return;
      case ShardOp::eval: ask<EvalStats>(proto::eval_atom::value); return;
      case ShardOp::load: ask<bool>(proto::load_atom::value, c.path); return;
      case ShardOp::save: ask<bool>(proto::save_atom::value, c.path); return;
      case ShardOp::state: ask<TrainingState>(proto::state_atom::value, c.arg); return;
      case ShardOp::restore: {
        const LoadedCheckpoint checkpoint = read_checkpoint(c.path);
        ask<bool>(proto::restore_atom::value, checkpoint.state, c.path);
        return;
      }
      case ShardOp::end: return;
    }
  }

 private:
  World world_;
  std::unique_ptr<comm::SubgroupTransport> tensor_, data_;
  std::unique_ptr<Trainer> trainer_;
  std::unique_ptr<ActorSystem> system_;
  caf::actor actor_;
  std::chrono::microseconds poll_{0};  // how long ask() polls for a quick answer (message_poll.h)
};

// Rank 0: the Job. Every operation goes to the ranks that take part, then runs on shard (0, 0).
class TensorParallelProcessesJob final : public Job {
 public:
  TensorParallelProcessesJob(const RunConfig& config, const plan::Topology& topology, const std::vector<std::string>& args)
      : dp_(config.parallel.data), tp_(config.parallel.tensor) {
    const std::string secret = config.comm.secret_file.empty() ? net::job_secret()
                                                               : net::configured_secret(config.comm.secret_file);
    std::string bound;
    std::vector<net::TcpListener> listeners = net::bind_listeners(
        net::consecutive_addresses("comm.address", config.comm.address, 1, "the tensor-parallel ranks' rendezvous"),
        kTensorAddressEnv, bound);
    // Heartbeats: a rank that hangs is found, killed and named within half of comm.timeout_s.
    ranks_ = std::make_unique<ReplicaProcesses>("/proc/self/exe", args, dp_ * tp_, secret,
                                                std::max(comm_timeout(config) / 2, std::chrono::milliseconds(200)));
    shard_ = std::make_unique<ShardProcess>(config, topology, 0,
                                            connect_world(config, 0, secret, "", &listeners.at(0)));
    summary_ = fmt::format("tensor parallel, {} replica{} x {} shards as processes over {} (rendezvous {})\n", dp_,
                           dp_ == 1 ? "" : "s", tp_,
                           config.comm.transport == TransportKind::shm ? "shared memory" : "tcp", bound);
  }
  ~TensorParallelProcessesJob() override {
    // Stopped between steps (a signal): the ranks end as they would after the last step. Unwinding from
    // a failure: the world closes without a goodbye, so they see rank 0 gone at once.
    if (!ended_ && std::uncaught_exceptions() == 0) try {
        tell(all_ranks(), {ShardOp::end});
      } catch (const Error&) {
      }
    shard_.reset();  // the actor, the trainer and the links first, then the processes
    ranks_.reset();
  }

  StepStats train_step(std::int64_t step) override {
    try {
      tell(all_ranks(), {ShardOp::step, step});
      const StepStats s = shard_->ask<StepStats>(proto::step_atom::value, step);
      if (s.skipped && skipped_++ == 0) first_skipped_ = s.nonfinite;
      return s;
    } catch (const Error& e) {
      // A step that fails because a rank hung names that rank, not the link that broke first.
      const std::string hung = ranks_->hung();
      if (hung.empty()) throw;
      const std::string seen = e.what();
      throw Error(ErrorKind::kIo, "tensor-parallel " + hung + "; rank 0's step " + std::to_string(step) +
                                      " failed with it: " + seen.substr(0, seen.find('\n')));
    }
  }
  // Replicas hold the same weights: replica 0's shards evaluate, write files and gather checkpoints.
  EvalStats evaluate() override {
    tell(replica0_ranks(), {ShardOp::eval});
    return shard_->ask<EvalStats>(proto::eval_atom::value);
  }
  void load_weights(const std::string& path) override {
    tell(all_ranks(), {ShardOp::load, 0, path});
    shard_->ask<bool>(proto::load_atom::value, path);
  }
  void save_weights(const std::string& path) override {
    tell(replica0_ranks(), {ShardOp::save, 0, path});
    shard_->ask<bool>(proto::save_atom::value, path);
  }
  std::string checkpoint_refusal() override { return {}; }
  TrainingState training_state(std::int64_t steps_done) override {
    tell(replica0_ranks(), {ShardOp::state, steps_done});
    return shard_->ask<TrainingState>(proto::state_atom::value, steps_done);
  }
  // Every rank reads `source` (the checkpoint) itself: the state is whole tensors, each keeps its slices.
  void restore_training_state(const TrainingState& state, const std::string& source) override {
    tell(all_ranks(), {ShardOp::restore, 0, source});
    shard_->ask<bool>(proto::restore_atom::value, state, source);
  }
  void set_trace(TraceRecorder* trace) override { shard_->trainer().set_trace(trace); }  // shard 0's spans
  std::string data_description() override { return shard_->trainer().dataset().describe(); }
  int threads() override { return shard_->trainer().backend().threads(); }
  // Replicated parameters once, split ones T times (each shard holds 1/T of them).
  std::int64_t parameter_count() override {
    std::int64_t n = 0;
    for (const Param* p : shard_->trainer().model().params().all()) n += p->value.numel() * (p->split.split() ? tp_ : 1);
    return n;
  }
  std::string summary() override { return summary_; }
  std::string report() override {
    if (skipped_ == 0) return {};
    return fmt::format("{} step{} skipped for a non-finite loss or gradient (train.on_nonfinite = skip), the first "
                       "{}\n",
                       skipped_, skipped_ == 1 ? "" : "s", first_skipped_);
  }
  void finish() override {
    tell(all_ranks(), {ShardOp::end});
    ended_ = true;
    const std::string failure = ranks_->wait_all();
    if (const std::string hung = ranks_->hung(); !hung.empty()) throw Error(ErrorKind::kIo, "tensor-parallel " + hung);
    if (!failure.empty()) throw Error(ErrorKind::kIo, "tensor-parallel " + failure + " (see its error above)");
  }

 private:
  // Ranks other than 0: all of them, or replica 0's shards (ranks 1..T-1).
  int all_ranks() const { return dp_ * tp_; }
  int replica0_ranks() const { return tp_; }
  void tell(int ranks, const ShardCommand& command) {
    for (int r = 1; r < ranks; ++r) send_command(shard_->world(), r, command);
  }

  int dp_, tp_;
  std::unique_ptr<ReplicaProcesses> ranks_;
  std::unique_ptr<ShardProcess> shard_;
  std::string summary_;
  bool ended_ = false;
  std::int64_t skipped_ = 0;
  std::string first_skipped_;
};

}  // namespace

std::unique_ptr<Job> launch_tensor_parallel_processes(const RunConfig& config, const plan::Topology& topology,
                                                      const std::vector<std::string>& args) {
  return std::make_unique<TensorParallelProcessesJob>(config, topology, args);
}

void run_tensor_shard_process(const RunConfig& config, const plan::Topology& topology, int rank, long long crash_at) {
  const plan::Coord c = topology.coord_of(rank);
  try {
    const std::vector<std::string> addresses = net::addresses_from_environment(kTensorAddressEnv);
    ShardProcess shard(config, topology, rank,
                       connect_world(config, rank, net::configured_secret(config.comm.secret_file), addresses.at(0), nullptr));
    for (;;) {
      const ShardCommand command = wait_command(shard.world(), 0, comm_timeout(config));
      if (command.op == ShardOp::end) return;
      if (command.op == ShardOp::step && command.arg == crash_at) std::_Exit(3);
      shard.run(command);
    }
  } catch (const Error& e) {
    throw Error(e.kind(), fmt::format("tensor-parallel rank {} (data {}, tensor {}): {}", rank, c.data, c.tensor, e.what()));
  }
}

}  // namespace troupe
