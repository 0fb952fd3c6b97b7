// Tensor shards as processes: the world's rendezvous, one shard per process run by its actor, rank 0's commands, and the restart of a dead shard process.
#include "actors/tensor_parallel_processes.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <optional>

#include <caf/all.hpp>
#include <fmt/format.h>

#include "actors/actor_system.h"
#include "actors/message_poll.h"
#include "actors/process_recovery.h"
#include "actors/tensor_shard_actor.h"
#include "actors/tensor_shard_commands.h"
#include "actors/tensor_shard_recovery.h"
#include "net/shm/shm_transport.h"
#include "net/tcp/launch.h"
#include "net/tcp/secret_source.h"
#include "net/tcp/tcp_transport.h"
#include "runtime/checkpoint/checkpoint_store.h"
#include "runtime/checkpoint/state_bytes.h"
#include "runtime/comm/group_aborted.h"
#include "runtime/comm/reformable_transport.h"
#include "runtime/comm/subgroup_transport.h"
#include "runtime/process/replica_processes.h"
#include "runtime/supervision/process_faults.h"
#include "runtime/supervision/restart_intensity.h"
#include "runtime/supervision/shard_copies.h"
#include "runtime/supervision/shard_state_moves.h"

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

// How a world forms: the first time, or again after a rank process died (re-form: rank 0 keeps its
// listener bound, calls `while_waiting` as it waits, and every process waits longer, since each comes
// when its shard has stopped, which may take a step's computing).
struct Rendezvous {
  net::TcpListener* listener = nullptr;  // rank 0's
  bool keep_listener = false;
  bool reform = false;
  std::function<void()> while_waiting;
};

// Joins the world of all D x T ranks over tcp, or shared memory (whose rendezvous and liveness are the
// same TCP links). Rank 0 passes the listener it bound before starting the others.
World connect_world(const RunConfig& config, int rank, const std::string& secret, const std::string& address,
                    const Rendezvous& how) {
  net::TcpOptions tcp{.rank = rank, .size = config.parallel.data * config.parallel.tensor, .address = address,
                      .reach = net::Reach::loopback, .secret = secret, .timeout = comm_timeout(config)};
  tcp.while_waiting = how.while_waiting;
  if (how.reform) tcp.rendezvous_timeout = std::max(std::chrono::milliseconds(60'000), 4 * comm_timeout(config));
  if (config.comm.transport == TransportKind::shm) {
    const net::ShmOptions shm{.tcp = tcp};
    std::unique_ptr<net::ShmTransport> t = how.listener ? net::connect_shm(shm, std::move(*how.listener)) : net::connect_shm(shm);
    net::ShmTransport* raw = t.get();
    return {std::move(t), [raw] { raw->abort(); }};
  }
  std::unique_ptr<net::TcpTransport> t = !how.listener      ? net::connect_tcp(tcp)
                                         : how.keep_listener ? net::connect_tcp_on(tcp, *how.listener)
                                                             : net::connect_tcp(tcp, std::move(*how.listener));
  net::TcpTransport* raw = t.get();
  return {std::move(t), [raw] { raw->abort(); }};
}

// One rank's shard: its tensor and data groups as views of the world, its Trainer, and the detached
// tensor-shard actor that runs it. With restarts the world is reformable: a failure under it abandons the
// step (comm::GroupAborted), and a new world replaces it under the same views.
class ShardProcess {
 public:
  ShardProcess(const RunConfig& config, const plan::Topology& topology, int rank, World world, bool restarts)
      : restarts_(restarts) {
    if (restarts) {
      auto reformable = std::make_unique<comm::ReformableTransport>(std::move(world.transport), std::move(world.abort));
      reformable_ = reformable.get();
      world_ = {std::move(reformable), [r = reformable_] { r->break_group(); }};
    } else {
      world_ = std::move(world);
    }
    tensor_ = std::make_unique<comm::SubgroupTransport>(*world_.transport, topology.group_of(rank, plan::Axis::tensor));
    if (topology.size(plan::Axis::data) > 1)
      data_ = std::make_unique<comm::SubgroupTransport>(*world_.transport, topology.group_of(rank, plan::Axis::data));
    trainer_ = std::make_unique<Trainer>(config, comm::TensorGroup{tensor_.get()}, data_.get());
    system_ = std::make_unique<ActorSystem>();
    spawn();
    poll_ = std::chrono::microseconds(config.comm.poll_us);
  }
  ~ShardProcess() {
    caf::anon_send_exit(actor_, caf::exit_reason::user_shutdown);
    caf::scoped_actor self(system_->get());
    self->wait_for(actor_);
  }

  comm::Transport& world() { return *world_.transport; }
  Trainer& trainer() { return *trainer_; }

  // Asks the shard actor and waits for its answer; its failure is rethrown as the troupe::Error it was,
  // a step it abandoned (its world failed under it, restarts on) as comm::GroupAborted.
  template <class R, class... Ts>
  R ask(Ts... request) {
    caf::scoped_actor self(system_->get());
    R answer{};
    std::optional<Error> failure;
    bool abandoned = false;
    auto pending = self->request(actor_, caf::infinite, request...);
    poll_for_replies(self.ptr(), 1, poll_);
    pending.receive([&](R& r) { answer = std::move(r); },
                    [&](caf::error& e) {
                      const caf::message& ctx = e.context();
                      if (ctx.size() == 2 && ctx.match_element<std::int32_t>(0) && ctx.match_element<std::string>(1)) {
                        abandoned = ctx.get_as<std::int32_t>(0) == kShardStepAbandoned;
                        failure = Error(abandoned ? ErrorKind::kIo : static_cast<ErrorKind>(ctx.get_as<std::int32_t>(0)),
                                        ctx.get_as<std::string>(1));
                      } else {
                        failure = Error(ErrorKind::kInternal, "tensor-shard actor: " + system_->get().render(e));
                      }
                    });
    if (abandoned) throw comm::GroupAborted(failure->what());
    if (failure) throw *failure;
    return answer;
  }

  // A command from rank 0, run on this shard (its answer is rank 0's to report).
  void run(const ShardCommand& c) {
    switch (c.op) {
      case ShardOp::step: ask<StepStats>(proto::step_atom::value, c.arg, restarts_, false); return;
      case ShardOp::eval: ask<EvalStats>(proto::eval_atom::value); return;
      case ShardOp::load: ask<bool>(proto::load_atom::value, c.path); return;
      case ShardOp::save: ask<bool>(proto::save_atom::value, c.path); return;
      case ShardOp::state: ask<TrainingState>(proto::state_atom::value, c.arg); return;
      case ShardOp::restore: {
        const LoadedCheckpoint checkpoint = read_checkpoint(c.path);
        ask<bool>(proto::restore_atom::value, checkpoint.state, c.path);
        return;
      }
      case ShardOp::copy:
      case ShardOp::end: return;
    }
  }

  // --- restarts ---
  // Ends the actor as a crash would (fault.inject "kill shard 0" on rank 0) and waits until it has ended.
  void kill_actor() {
    caf::anon_send_exit(actor_, caf::exit_reason::kill);
    caf::scoped_actor self(system_->get());
    self->wait_for(actor_);
  }
  // A new actor on the same Trainer when the last one died; true when it had.
  bool respawn_if_dead() {
    if (!dead_->load()) return false;
    spawn();
    return true;
  }
  // Ends the world's connections: every other process learns of the interruption at once.
  void break_world() { reformable_->break_group(); }
  comm::Transport& current_world() { return reformable_->inner(); }
  // A world formed again, for the same views (no call is in progress: the step was abandoned).
  void replace_world(World w) { reformable_->replace(std::move(w.transport), std::move(w.abort)); }

 private:
  // The actor's Trainer is touched by this thread only between the actor's answers (the shard state
  // moves of a re-form), when the actor waits for its next request.
  void spawn() {
    dead_ = std::make_shared<std::atomic<bool>>(false);
    actor_ = system_->get().spawn<caf::detached>(tensor_shard_actor, trainer_.get(), world_.abort, false);
    caf::actor_cast<caf::abstract_actor*>(actor_)->attach_functor([dead = dead_](const caf::error&) { dead->store(true); });
  }

  bool restarts_;
  World world_;
  comm::ReformableTransport* reformable_ = nullptr;  // world_'s, with restarts
  std::unique_ptr<comm::SubgroupTransport> tensor_, data_;
  std::unique_ptr<Trainer> trainer_;
  std::unique_ptr<ActorSystem> system_;
  caf::actor actor_;
  std::shared_ptr<std::atomic<bool>> dead_;
  std::chrono::microseconds poll_{0};  // how long ask() polls for a quick answer (message_poll.h)
};

// The bytes of a shard's state at `step`'s boundary as it stands (a copy, or a restarted shard's).
// Serialised straight from the live tensors (one copy): the actor is idle, nothing changes them meanwhile.
std::vector<std::byte> shard_bytes(Trainer& trainer, std::int64_t step) {
  return state_to_bytes(trainer.shard_state_view(step));
}

// A rank process's side of a re-form, over the new world `w` (actors/tensor_shard_recovery.h): says where it
// stands, rewinds to the step rank 0 re-runs, sends and takes shard states as rank 0 says. Returns where it
// stands now.
supervision::ShardStanding take_verdict(ShardProcess& shard, comm::Transport& w, const supervision::ShardStanding& me) {
  Trainer& trainer = shard.trainer();
  send_standing(w, {me.standing, trainer.boundary_step()});  // the copy it kept as its last step began
  const ShardVerdict v = recv_verdict(w);
  trainer.rewind(v.step);  // its kept copy when that is the step's; a step's partial work dropped either way
  if (!v.send_to.empty()) {
    const std::vector<std::byte> bytes = shard_bytes(trainer, v.step);
    for (int to : v.send_to) send_state_bytes(w, to, bytes);
  }
  if (v.from >= 0) {
    const std::string source = fmt::format("rank {}'s shard state", v.from);
    TrainingState state = state_from_bytes(recv_state_bytes(w, v.from), source);
    state.step = v.step;
    trainer.restore_shard_state(state, source);
  }
  return {v.step, trainer.boundary_step()};
}

// Past the restart intensity: the job stops (not a failure to form the world that another attempt heals).
struct Escalation : Error {
  explicit Escalation(const std::string& what) : Error(ErrorKind::kIo, what) {}
};

// Rank 0: the Job. Every operation goes to the ranks that take part, then runs on shard (0, 0).
class TensorParallelProcessesJob final : public Job {
 public:
  TensorParallelProcessesJob(const RunConfig& config, const plan::Topology& topology, const std::vector<std::string>& args)
      : config_(config),
        dp_(config.parallel.data),
        tp_(config.parallel.tensor),
        restarts_(shard_restart_refusal(config).empty()),
        copies_on_(restarts_ && dp_ == 1),
        intensity_(config.fault.max_restarts, config.fault.restart_window_s),
        faults_(supervision::parse_fault_plan(config.fault.inject), 0, 0, 0, true) {
    secret_ = config.comm.secret_file.empty() ? net::job_secret() : net::configured_secret(config.comm.secret_file);
    std::string bound;
    std::vector<net::TcpListener> listeners = net::bind_listeners(
        net::consecutive_addresses("comm.address", config.comm.address, 1, "the tensor-parallel ranks' rendezvous"),
        kTensorAddressEnv, bound);
    listener_ = std::make_unique<net::TcpListener>(std::move(listeners.at(0)));
    // Heartbeats: a rank that hangs is found, killed and named within half of comm.timeout_s.
    ranks_ = std::make_unique<ReplicaProcesses>("/proc/self/exe", args, dp_ * tp_, secret_,
                                                std::max(comm_timeout(config) / 2, std::chrono::milliseconds(200)));
    // With restarts the listener stays bound for the world to form again.
    shard_ = std::make_unique<ShardProcess>(
        config, topology, 0, connect_world(config, 0, secret_, "", {.listener = listener_.get(), .keep_listener = restarts_}),
        restarts_);
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
    if (!restarts_) {
      try {
        fire_faults(step);
        return count_skipped(step_once(step));
      } catch (const Error& e) {
        // A step that fails because a rank hung names that rank, not the link that broke first.
        const std::string hung = ranks_->hung();
        if (hung.empty()) throw;
        const std::string seen = e.what();
        throw Error(ErrorKind::kIo, "tensor-parallel " + hung + "; rank 0's step " + std::to_string(step) +
                                        " failed with it: " + seen.substr(0, seen.find('\n')));
      }
    }
    for (;;) {
      std::string cause;
      bool own = false;  // rank 0's own shard failed (or its actor died): it is restarted in place
      try {
        fire_faults(step);
        if (copies_on_ && copies_.step() != step) collect_copies(step, true);  // first step, or after a load
        const StepStats s = step_once(step);
        if (copies_on_) collect_copies(step + 1, false);  // every shard sends it after its step
        intensity_.recovered(now_s());
        return count_skipped(s);
      } catch (const comm::GroupAborted& e) {
        cause = e.what();
      } catch (const Error& e) {
        if (!failure_restarts(e.kind())) throw;  // bad input, a non-finite stop: the re-run would meet it again
        cause = e.what();
        own = true;
      }
      recover(step, cause.substr(0, cause.find('\n')), own);
    }
  }
  // Replicas hold the same weights: replica 0's shards evaluate, write files and gather checkpoints.
  EvalStats evaluate() override {
    tell(replica0_ranks(), {ShardOp::eval});
    return shard_->ask<EvalStats>(proto::eval_atom::value);
  }
  void load_weights(const std::string& path) override {
    copies_.forget();
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
    copies_.forget();
    tell(all_ranks(), {ShardOp::restore, state.step, source});
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
    std::string out = restarts_report(intensity_.restarts(), config_.fault.max_restarts);
    if (copies_on_ && copies_.step() >= 0 && !copy_ms_.empty()) {
      std::vector<double> ms = copy_ms_;
      std::sort(ms.begin(), ms.end());
      out += fmt::format("rank 0 keeps a copy of the other shards' step-boundary states ({:.2f} MB; fault.max_restarts "
                         "> 0): it waited {:.2f} ms for them after a step (median of {} steps, max {:.2f} ms)\n",
                         copies_.bytes() / 1e6, ms[ms.size() / 2], ms.size(), ms.back());
    }
    if (skipped_ == 0) return out;
    return out + fmt::format("{} step{} skipped for a non-finite loss or gradient (train.on_nonfinite = skip), the first "
                             "{}\n",
                             skipped_, skipped_ == 1 ? "" : "s", first_skipped_);
  }
  std::vector<supervision::Restart> restarts() override { return intensity_.restarts(); }
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
  StepStats step_once(std::int64_t step) {
    tell(all_ranks(), {ShardOp::step, step});
    return shard_->ask<StepStats>(proto::step_atom::value, step, restarts_, false);
  }
  StepStats count_skipped(const StepStats& s) {
    if (s.skipped && skipped_++ == 0) first_skipped_ = s.nonfinite;
    return s;
  }
  double now_s() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - born_).count(); }

  // fault.inject's clause for rank 0 at this attempt of `step`: its death ("kill rank 0"), or its own shard's
  // actor killed or its step throwing (shard 0 of replica 0).
  void fire_faults(std::int64_t step) {
    const std::optional<supervision::FaultClause> c = faults_.take(step);
    if (!c) return;
    if (c->target == supervision::FaultTarget::rank) {
      std::fflush(stdout);
      std::fflush(stderr);
      ::raise(c->action == supervision::FaultAction::stall ? SIGSTOP : SIGKILL);
    } else if (c->action == supervision::FaultAction::kill) {
      shard_->kill_actor();
    } else {
      shard_->trainer().inject_fault();
    }
  }

  // The copies of every other shard's state at `step`'s boundary (one replica): asked for (the first step,
  // or after weights were loaded), or sent by each shard after its step.
  // Timed: rank 0 waits for them before it returns the step (their cost on the step's critical path: the
  // shards' serialising and sending, the transfer, the receive).
  void collect_copies(std::int64_t step, bool ask) {
    const auto start = std::chrono::steady_clock::now();
    if (ask) tell(replica0_ranks(), {ShardOp::copy, step});
    for (int r = 1; r < tp_; ++r) copies_.offer(r, step, recv_copy(shard_->world(), r, step));
    copies_.commit(step);
    if (!ask) copy_ms_.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }

  // Reaps every rank process that ended and starts it again (or throws past the intensity).
  void restart_dead(std::int64_t step) {
    for (const ReplicaProcesses::Ended& e : ranks_->exited()) {
      const plan::Coord c{.data = e.rank / tp_, .tensor = e.rank % tp_};
      const std::string child = fmt::format("tensor-parallel rank {}", e.rank);
      const std::string cause = fmt::format("its process {} {}", static_cast<int>(e.pid), e.how);
      if (!intensity_.allow(child, step, cause, now_s()))
        throw Escalation(intensity_.escalation(
            fmt::format("the process of tensor-parallel rank {} (replica {} of parallel.data = {}, tensor shard {} of "
                        "parallel.tensor = {}; started by rank 0)",
                        e.rank, c.data, dp_, c.tensor, tp_),
            step, cause, config_.train.checkpoint_dir));
      ++restarted_;
      ranks_->restart(e.rank, {{kRejoinEnv, "1"}});
      std::fprintf(stderr,
                   "troupe: tensor-parallel rank %d (replica %d, tensor shard %d): %s in step %lld; rank 0 restarted it "
                   "as process %d (restart %d of at most %d within %g s); it takes its shard's state from %s and every "
                   "rank re-runs step %lld\n",
                   e.rank, c.data, c.tensor, cause.c_str(), static_cast<long long>(step),
                   static_cast<int>(ranks_->pid_of(e.rank)), intensity_.recent(now_s()), intensity_.max_restarts(),
                   intensity_.window_s(), dp_ > 1 ? "another replica's shard" : "the copy rank 0 keeps",
                   static_cast<long long>(step));
    }
  }

  // Every process abandoned step `step` (or is about to: the world is broken here first). Rank 0 restarts
  // the dead processes, forms the world again with them and the survivors, and agrees with every process
  // on re-running `step` (actors/tensor_shard_recovery.h).
  void recover(std::int64_t step, const std::string& cause, bool own) {
    shard_->break_world();
    copies_.discard_pending();
    own = shard_->respawn_if_dead() || own;
    shard_->trainer().rewind(step);  // its kept copy is step's (or it had not begun the step)
    const int restarted_at_start = restarted_;
    std::string last;
    for (int attempt = 0; attempt <= config_.fault.max_restarts + 1; ++attempt) {
      const int restarted_before = restarted_;
      try {
        restart_dead(step);
        World w = connect_world(config_, 0, secret_, "",
                                {.listener = listener_.get(), .keep_listener = true, .reform = true,
                                 .while_waiting = [this, step] { restart_dead(step); }});
        if (restarted_ == restarted_at_start) count_own_restart(step, cause, own);
        agree(*w.transport, step);
        shard_->replace_world(std::move(w));
        intensity_.rerun(now_s());
        return;
      } catch (const Escalation&) {
        throw;
      } catch (const Error& e) {
        last = e.what();
        // Another attempt only when a rank died meanwhile (and was restarted): anything else would fail again.
        restart_dead(step);
        if (restarted_ == restarted_before) throw;
      }
    }
    throw Error(ErrorKind::kIo, "the tensor-parallel world did not form again: " + last);
  }

  // No rank process died: rank 0's own shard actor was restarted in place, or the world failed with every
  // process alive (a collective timed out). Either counts toward the restart intensity, so that a step that
  // keeps failing ends in the escalation, not a loop.
  void count_own_restart(std::int64_t step, const std::string& cause, bool own) {
    const std::string child = own ? "tensor-parallel rank 0's shard actor" : "tensor-parallel world";
    if (!intensity_.allow(child, step, cause, now_s()))
      throw Escalation(intensity_.escalation(
          own ? fmt::format("the shard actor of tensor-parallel rank 0 (replica 0, tensor shard 0, in rank 0's process)")
              : fmt::format("the tensor-parallel world of {} rank processes (every rank lived)", dp_ * tp_),
          step, cause, config_.train.checkpoint_dir));
    std::fprintf(stderr, "troupe: %s: %s in step %lld; rank 0 restarted it in place and every rank re-runs the step\n",
                 child.c_str(), cause.c_str(), static_cast<long long>(step));
  }

  // Rank 0's side of the agreement: every rank re-runs `step`; whoever does not stand at its boundary takes
  // its shard's state from a live peer, or from rank 0's copy.
  void agree(comm::Transport& w, std::int64_t step) {
    const std::vector<supervision::ShardStanding> standings = recv_standings(w, {step, step});
    const std::vector<supervision::StateMove> moves = supervision::plan_state_moves(dp_, tp_, standings, step, copies_.step());
    send_verdicts(w, step, moves);
    std::vector<std::byte> mine;
    for (const supervision::StateMove& m : moves) {
      if (m.from != 0) continue;
      if (m.kept_copy) {
        send_state_bytes(w, m.to, copies_.of(m.to));
        continue;
      }
      if (mine.empty()) mine = shard_bytes(shard_->trainer(), step);
      send_state_bytes(w, m.to, mine);
    }
  }

  RunConfig config_;
  int dp_, tp_;
  bool restarts_;   // shard_restart_refusal is ""
  bool copies_on_;  // rank 0 keeps copies of the other shards' states (one replica, restarts on)
  supervision::RestartIntensity intensity_;
  supervision::ProcessFaults faults_;  // fault.inject's clauses for rank 0 and its shard
  std::string secret_;
  std::unique_ptr<net::TcpListener> listener_;  // kept bound while rank processes may be restarted
  std::unique_ptr<ReplicaProcesses> ranks_;
  std::unique_ptr<ShardProcess> shard_;
  supervision::ShardCopies copies_;
  int restarted_ = 0;  // rank processes restarted so far
  std::vector<double> copy_ms_;  // each step's wait for the copies
  std::chrono::steady_clock::time_point born_ = std::chrono::steady_clock::now();
  std::string summary_;
  bool ended_ = false;
  std::int64_t skipped_ = 0;
  std::string first_skipped_;
};

}  // namespace

std::string shard_restart_refusal(const RunConfig& config) {
  if (config.fault.max_restarts == 0) return "fault.max_restarts = 0";
  if (config.comm.transport != TransportKind::tcp)
    return "comm.transport = shm (only a tcp world of tensor-shard processes forms again yet)";
  return {};
}

std::unique_ptr<Job> launch_tensor_parallel_processes(const RunConfig& config, const plan::Topology& topology,
                                                      const std::vector<std::string>& args) {
  return std::make_unique<TensorParallelProcessesJob>(config, topology, args);
}

void run_tensor_shard_process(const RunConfig& config, const plan::Topology& topology, int rank, long long crash_at) {
  const plan::Coord c = topology.coord_of(rank);
  try {
    const bool restarts = shard_restart_refusal(config).empty();
    const bool copies = restarts && config.parallel.data == 1;
    const std::string address = net::addresses_from_environment(kTensorAddressEnv).at(0);
    const std::string secret = net::configured_secret(config.comm.secret_file);
    // A restarted process joins a world being formed again, where the survivors come once their shards stopped.
    const bool rejoining = restarts && std::getenv(kRejoinEnv) != nullptr;
    ShardProcess shard(config, topology, rank, connect_world(config, rank, secret, address, {.reform = rejoining}), restarts);
    // Where this shard stands: a fresh one at step 0's boundary; a restarted one where rank 0 says.
    supervision::ShardStanding me{0, -1};
    std::int64_t joined_at = -1;
    if (rejoining) {
      me = take_verdict(shard, shard.current_world(), {-1, -1});
      joined_at = me.standing;
    }
    supervision::ProcessFaults faults(supervision::parse_fault_plan(config.fault.inject), rank, c.data, c.tensor, true,
                                      joined_at);
    for (;;) {
      try {
        const ShardCommand command = wait_command(shard.world(), 0, comm_timeout(config));
        switch (command.op) {
          case ShardOp::end: return;
          case ShardOp::copy: send_copy(shard.world(), command.arg, shard_bytes(shard.trainer(), command.arg)); break;
          case ShardOp::step: {
            if (command.arg == crash_at) std::_Exit(3);
            if (const std::optional<supervision::FaultClause> f = faults.take(command.arg)) {
              if (f->action == supervision::FaultAction::raise) {
                shard.trainer().inject_fault();  // its step throws; this process dies of it
              } else {  // killed, or hung (its heartbeats stop), as step S begins here
                std::fflush(stdout);
                std::fflush(stderr);
                ::raise(f->action == supervision::FaultAction::stall ? SIGSTOP : SIGKILL);
              }
            }
            shard.run(command);
            me = {command.arg + 1, restarts ? command.arg : -1};
            if (copies) send_copy(shard.world(), command.arg + 1, shard_bytes(shard.trainer(), command.arg + 1));
            break;
          }
          case ShardOp::restore:
            shard.run(command);
            me = {command.arg, -1};
            break;
          default: shard.run(command);
        }
      } catch (const comm::GroupAborted&) {
        if (!restarts) throw;
        // A process died or hung (or rank 0 restarted its own shard): form the world again with rank 0.
        shard.break_world();
        World w = connect_world(config, rank, secret, address, {.reform = true});
        me = take_verdict(shard, *w.transport, me);
        shard.replace_world(std::move(w));
      }
    }
  } catch (const Error& e) {
    throw Error(e.kind(), fmt::format("tensor-parallel rank {} (data {}, tensor {}): {}", rank, c.data, c.tensor, e.what()));
  }
}

}  // namespace troupe
