// PsTrainer: worker threads around a PsCluster, one training step at a time.
#include "actors/ps/ps_trainer.h"

#include "actors/ps/ps_link.h"
#include "actors/ps/ps_processes.h"
#include "actors/ps/shard_supervision.h"

#include "actors/actor_system.h"
#include "runtime/plan/topology.h"
#include "runtime/supervision/supervision_tree.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <map>
#include <optional>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "models/gpt_layers.h"
#include "runtime/optim/clip_grad.h"
#include "runtime/optim/lr_schedule.h"

namespace troupe::ps {

struct PsTrainer::Worker {
  int index = 0;  // the worker's rank among parallel.data
  std::unique_ptr<CpuBackend> backend;
  std::unique_ptr<Model> model;
  std::unique_ptr<PsEndpoint> client;  // PsClient here, or RemotePsClient in a remote worker
  std::atomic<std::int64_t> pushing{-1};  // the step whose push it began: a failure after that is not re-run
};

namespace {

// Every gradient accumulator of `model` as exact sums, by parameter: its own, then (for the tied token
// embedding) the LM head's, which one device would fold into it after rounding both. Clears them.
std::vector<ExactGrad> take_exact_grads(Model& model, Backend& be) {
  const std::vector<Param*>& params = model.params().all();
  std::vector<ExactGrad> out(params.size());
  auto take = [&be](const Tensor& grad, ExactGrad& into) {
    std::span<ExactSum> acc = be.exact_grad(grad);
    into.sums.insert(into.sums.end(), acc.begin(), acc.end());
    std::fill(acc.begin(), acc.end(), ExactSum{0});
  };
  for (std::size_t d = 0; d < params.size(); ++d) take(params[d]->grad, out[d]);
  for (std::size_t i = 0; i < model.num_layers(); ++i) {
    const std::vector<Tensor> extra = model.layer(i).extra_grads();
    if (extra.empty()) continue;
    auto* head = dynamic_cast<GptHead*>(&model.layer(i));
    TROUPE_CHECK(head != nullptr && extra.size() == 1, "layer ", model.layer(i).name(),
                 " keeps extra gradients the parameter-server trainer does not know how to fold");
    const auto it = std::find(params.begin(), params.end(), &head->tied_weight());
    TROUPE_CHECK(it != params.end(), "tied weight ", head->tied_weight().name, " is not a parameter of the model");
    ExactGrad& target = out[static_cast<std::size_t>(it - params.begin())];
    take(extra[0], target);
    ++target.buffers;
  }
  return out;
}

// Every worker's per-row losses, micro-batch by micro-batch, as doubles (exact: the same sum either way).
std::vector<double> per_row_losses(const std::vector<std::vector<Tensor>>& by_worker) {
  std::vector<double> rows;
  for (const auto& worker : by_worker)
    for (const Tensor& l : worker)
      for (float x : l.span_f32()) rows.push_back(x);
  return rows;
}

PsOptions ps_options(const RunConfig& c) {
  PsOptions o;
  o.mode = c.ps.mode;
  o.staleness = c.ps.staleness;
  o.workers = c.parallel.data;
  o.optim = c.optim;
  o.clip = o.mode == PsMode::sync && c.train.grad_clip > 0.0;
  return o;
}

}  // namespace

double ps_wait_s(const RunConfig& config) {
  const bool restarts = config.comm.transport == TransportKind::tcp && config.parallel.data > 1 && config.ps.max_restarts > 0;
  return restarts ? std::max(60.0, 4 * config.comm.timeout_s) : config.comm.timeout_s;
}

PsTrainer::PsTrainer(const RunConfig& config) : PsTrainer(config, PsLinks{}, false) {}

PsTrainer::PsTrainer(const RunConfig& config, PsLinks links) : PsTrainer(config, std::move(links), true) {}

PsTrainer::PsTrainer(const RunConfig& config, PsLinks links, bool remote)
    : config_(config), remote_(remote), links_(std::move(links)) {
  auto bad = [](const std::string& what) { throw Error(ErrorKind::kConfig, what); };
  const ParallelConfig& par = config.parallel;
  if (par.gradient_exchange != GradientExchange::ps)
    bad(fmt::format("the parameter-server trainer needs parallel.gradient_exchange = ps (got {})", par.gradient_exchange));
  if (par.pipeline != 1)
    bad(fmt::format("parallel.pipeline = {} with parallel.gradient_exchange = ps: parameter servers serve whole models "
                    "so far; use parallel.pipeline = 1",
                    par.pipeline));
  if (config.train.deterministic && config.ps.mode != PsMode::sync)
    bad(fmt::format("train.deterministic = true with ps.mode = {}: asynchronous updates depend on timing; use ps.mode = sync",
                    config.ps.mode));
  if (!remote && config.comm.transport != TransportKind::inproc && par.data > 1)
    bad(fmt::format("comm.transport = {}: this parameter-server trainer runs every worker in this process; a tcp run "
                    "starts one process per worker (troupe train does)",
                    config.comm.transport));
  if (par.data < 1 || par.microbatches < 1 || config.train.batch_size % (par.data * par.microbatches) != 0)
    bad(fmt::format("train.batch_size = {} is not divisible by parallel.data x parallel.microbatches = {} x {}",
                    config.train.batch_size, par.data, par.microbatches));
  validate(ps_options(config));
  if (remote) {
    const int rank = links_.rank;
    TROUPE_CHECK(rank >= 0 && rank < par.data, "ps rank ", rank, " of ", par.data, " workers");
    TROUPE_CHECK(static_cast<int>(links_.links.size()) == (rank == 0 ? par.data - 1 : 1), "ps rank ", rank, " with ",
                 links_.links.size(), " links for ", par.data, " workers");
  }
  dataset_ = make_dataset(config);
  initial_ = std::make_unique<Model>(make_layer_specs(config.model, config.train.seed));
  std::vector<PsParamSpec> specs;
  for (const Param* p : initial_->params().all()) specs.push_back({p->name, p->value.shape(), false});
  layout_ = std::make_shared<const PsLayout>(std::move(specs), config.ps.shards);
  // In-process: every worker here, sharing the threads. tcp: this process's one worker; the other
  // processes on the machine take their share of the cores.
  const int first = remote ? links_.rank : 0, last = remote ? links_.rank : par.data - 1;
  for (int w = first; w <= last; ++w) workers_.push_back(make_worker(w));
  system_ = std::make_shared<ActorSystem>();
  {
    const plan::Topology topology = plan::make_topology(config_, layer_info(make_layer_specs(config_.model, config_.train.seed)),
                                                        std::vector<Device>(1, Device::cpu()));
    supervisor_ = std::make_unique<supervision::Supervisor>(
        supervision::make_supervision_tree(topology), topology,
        supervision::RestartIntensity(config_.fault.max_restarts, config_.fault.restart_window_s));
  }
  const bool remote_worker = remote && links_.rank > 0;
  if (remote_worker) {
    auto client = std::make_unique<RemotePsClient>(*links_.links[0], layout_, links_.rank);
    steps_done_ = client->hello();  // 0, or where a restarted worker resumes
    workers_[0]->client = std::move(client);
  } else {
    start_cluster();
  }
  // A restarted worker process does not fire the clauses of the steps up to the one it resumes at.
  const std::int64_t joined_at = remote_worker && PsProcesses::restarted() ? steps_done_ : -1;
  for (const supervision::FaultClause& c : supervision::parse_fault_plan(config.fault.inject).clauses)
    if (c.target == supervision::FaultTarget::worker && c.index >= first && c.index <= last && c.step > joined_at)
      worker_faults_.push_back(c);
  for (std::size_t i = 0; i < workers_.size(); ++i) worker_actors_.push_back(spawn_worker(i));
}

std::unique_ptr<PsTrainer::Worker> PsTrainer::make_worker(int w) const {
  const int threads = config_.train.threads > 0 ? config_.train.threads
                                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto worker = std::make_unique<Worker>();
  worker->index = w;
  worker->backend = std::make_unique<CpuBackend>(std::max(1, threads / config_.parallel.data));
  worker->backend->set_deterministic(config_.train.deterministic);
  worker->backend->set_precision(config_.train.precision);
  worker->model = std::make_unique<Model>(make_layer_specs(config_.model, config_.train.seed));
  return worker;
}

caf::actor PsTrainer::spawn_worker(std::size_t i) {
  const bool remote_worker = remote_ && links_.rank > 0;
  WorkerJob job = [this, i, remote_worker](std::int64_t step, const Batch& batch) {
    WorkerStep out;
    std::function<void(const std::vector<Tensor>&)> report;
    if (remote_worker)  // its losses go to rank 0 before its push, which rank 0 waits for
      report = [&](const std::vector<Tensor>& mine) {
        static_cast<RemotePsClient&>(*workers_[0]->client).report(step, per_row_losses({mine}));
      };
    out.losses = run_worker(i, step, batch, out.norm, report);
    return out;
  };
  return system_->get().spawn<caf::detached>(ps_worker_actor, std::move(job));
}

double PsTrainer::clock_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

bool PsTrainer::take_worker_fault(int w, std::int64_t step) {
  std::lock_guard lock(restart_mu_);
  return supervision::take_clause(worker_faults_, w, step);
}

WorkerAnswers PsTrainer::drive_worker(std::size_t i, std::int64_t step, const Batch& batch) {
  WorkerAnswers a = ask_workers(system_->get(), {worker_actors_[i]}, step, batch);
  while (a.failures[0] && restart_worker(i, step, *a.failures[0])) {
    a = ask_workers(system_->get(), {worker_actors_[i]}, step, batch);
    if (!a.failures[0]) {
      std::lock_guard lock(restart_mu_);
      supervisor_->intensity().recovered(clock_s());
    }
  }
  return a;
}

// One-for-one: the failed worker's actor ends and a fresh one — a new model, backend and client, as at the
// start — runs the step again. Only a worker that had not begun its push: the shards hold nothing of its step
// then, so the re-run adds exactly what the first attempt would have. Not in a remote worker process (its
// failure ends the process, which rank 0 restarts), nor once the shards or another worker failed.
bool PsTrainer::restart_worker(std::size_t i, std::int64_t step, const Error& failure) {
  std::lock_guard lock(restart_mu_);
  Worker& old = *workers_[i];
  if (!cluster_ || escalated_ || old.pushing.load() == step || cluster_->dead_shard() || (server_ && server_->failed()))
    return false;
  const std::string child = fmt::format("worker {}", old.index);
  const std::string what = failure.what();
  const std::string cause = what.substr(0, what.find('\n'));
  const double died = clock_s();
  supervisor_->on_down(child, step, cause);
  if (!supervisor_->intensity().allow(child, step, cause, died)) {
    escalated_ = Error(ErrorKind::kIo,
                       supervisor_->intensity().escalation(supervisor_->place(child), step, cause, config_.train.checkpoint_dir));
    cluster_->abort();  // the other workers may wait on the shards for this one's push (a clipping round)
    return false;
  }
  {
    caf::scoped_actor self(system_->get());
    self->send_exit(worker_actors_[i], caf::exit_reason::kill);
    self->wait_for(worker_actors_[i]);
  }
  old.client.reset();  // its scoped actor, before the worker goes
  workers_[i] = make_worker(old.index);
  workers_[i]->client = cluster_->client(workers_[i]->index);
  worker_actors_[i] = spawn_worker(i);
  supervisor_->on_restart(child);
  supervisor_->intensity().rerun(clock_s());
  const auto& intensity = supervisor_->intensity();
  std::fprintf(stderr, "troupe: ps worker %d failed in step %lld: %s\ntroupe: restarted ps worker %d (restart %d of at most "
                       "%d within %g s); it runs step %lld again\n",
               workers_[i]->index, static_cast<long long>(step), cause.c_str(), workers_[i]->index,
               intensity.recent(died), intensity.max_restarts(), intensity.window_s(), static_cast<long long>(step));
  return true;
}

PsTrainer::~PsTrainer() {
  {
    caf::scoped_actor self(system_->get());
    for (auto& a : worker_actors_) self->send_exit(a, caf::exit_reason::user_shutdown);
    self->wait_for(worker_actors_);
  }
  const bool finished = std::uncaught_exceptions() == 0 && steps_done_ >= config_.train.steps;
  if (remote_ && links_.rank > 0) {
    if (finished) {
      try {
        static_cast<RemotePsClient&>(*workers_[0]->client).bye();
      } catch (const std::exception&) {  // the server is gone already: nothing left to tell it
      }
    } else if (links_.abort) {
      links_.abort();
    }
  }
  if (server_) server_->finish(finished);
  server_.reset();
  for (auto& w : workers_) w->client.reset();  // clients (scoped actors) before their actor system
  cluster_.reset();
}

void PsTrainer::start_cluster() {
  for (auto& w : workers_) w->client.reset();
  cluster_.reset();
  std::map<std::string, const Param*> by_name;
  for (const Param* p : initial_->params().all()) by_name[p->name] = p;
  PsInit init;
  init.dense = [&by_name](const std::string& name) { return by_name.at(name)->value.clone(); };
  cluster_ = std::make_unique<PsCluster>(layout_, ps_options(config_), init, remote_ ? ps_wait_s(config_) : config_.comm.timeout_s,
                                         system_);
  supervise_shards();
  for (auto& w : workers_) w->client = cluster_->client(w->index);
}

// Sync shards restart from their snapshots under the job's supervisor (fault.max_restarts); see shard_supervision.h.
void PsTrainer::supervise_shards() {
  ShardRestartBook book{.mu = &restart_mu_,
                        .intensity = &supervisor_->intensity(),
                        .escalated = &escalated_,
                        .clock_s = [this] { return clock_s(); },
                        .place = [this](const std::string& child) { return supervisor_->place(child); },
                        .checkpoint_dir = config_.train.checkpoint_dir,
                        .supervisor = supervisor_.get()};
  std::optional<PsShardSupervision> sup =
      shard_supervision(supervision::parse_fault_plan(config_.fault.inject).clauses, config_.ps.mode,
                        config_.ps.shard_snapshots, config_.fault.max_restarts, std::move(book));
  if (sup) cluster_->supervise(std::move(*sup));
}

int PsTrainer::restarts() const { return server_ ? server_->restarts() : 0; }

std::vector<supervision::Restart> PsTrainer::restart_log() const {
  std::vector<supervision::Restart> log = supervisor_->intensity().restarts();
  if (server_)
    for (supervision::Restart& r : server_->restart_log()) log.push_back(std::move(r));
  return log;
}

std::vector<Tensor> PsTrainer::run_worker(std::size_t local, std::int64_t step, const Batch& batch, double& norm,
                                          const std::function<void(const std::vector<Tensor>&)>& before_push) {
  Worker& me = *workers_[local];
  const int D = config_.parallel.data, w = me.index;
  const PsMode mode = config_.ps.mode;
  const std::int64_t b = config_.train.batch_size / D, rows = dataset_->rows_per_sample();
  const float scale = 1.0f / static_cast<float>(mode == PsMode::sync ? batch.targets.numel() : b * rows);
  const double lr = lr_at(config_.train, config_.optim.lr_or_default(), step);
  const double clip = config_.train.grad_clip;
  Model& model = *me.model;
  const std::vector<Param*>& params = model.params().all();
  const double t0 = trace_ ? trace_->now_us() : 0.0;
  const PsPulled got = me.client->pull(step, {});
  const double t1 = trace_ ? trace_->now_us() : 0.0;
  for (std::size_t d = 0; d < params.size(); ++d) params[d]->value.copy_from(got.dense[d]);
  // The worker's share in parallel.microbatches passes; gradients accumulate, nothing is sent between.
  model.zero_grad();
  const std::int64_t m = config_.parallel.microbatches, per = b / m;
  std::vector<Tensor> losses;
  for (std::int64_t k = 0; k < m; ++k) {
    const std::int64_t first = w * b + k * per;
    MicroBatch mb;
    mb.inputs = batch.inputs.slice(first, first + per);
    mb.targets = batch.targets.slice(first, first + per);
    mb.loss_scale = scale;
    mb.row_block = rows;
    auto ctxs = model.make_contexts();
    losses.push_back(model.forward(*me.backend, mb, ctxs, mb.inputs));
    model.backward(*me.backend, mb, ctxs, Tensor());
  }
  if (take_worker_fault(w, step))  // fault.inject: as a worker's bug or a failing device would
    throw Error(ErrorKind::kInternal,
                fmt::format("fault.inject: throw worker {} at step {} (after its backward, before its push)", w, step));
  if (before_push) before_push(losses);
  me.pushing = step;
  const double t2 = trace_ ? trace_->now_us() : 0.0;
  if (config_.train.deterministic) {
    // The exact sums go to the shards unrounded: they add them over workers and round once.
    me.client->push_exact(step, take_exact_grads(model, *me.backend), {}, lr);
  } else {
    model.flush_exact_grads(*me.backend);
    model.finish_grads();
    std::vector<Param*> mine = params;
    if (mode != PsMode::sync && clip > 0.0) clip_grad_norm(mine, clip);  // each push is its own step
    std::vector<Tensor> grads;
    for (Param* p : params) grads.push_back(p->grad.clone());  // the model zeroes its own next step
    me.client->push(step, grads, {}, lr);
  }
  const double t3 = trace_ ? trace_->now_us() : 0.0;
  if (w == 0 && mode == PsMode::sync && clip > 0.0) norm = me.client->clip(step, clip);
  if (trace_) {
    const int track = tracks_[local];
    trace_->span(track, "pull", "recv", t0, t1);
    trace_->span(track, "forward+backward", "compute", t1, t2);
    trace_->span(track, "push", "send", t2, t3);
    if (w == 0 && mode == PsMode::sync && clip > 0.0) trace_->span(track, "clip round", "optimizer", t3, trace_->now_us());
  }
  return losses;
}

StepStats PsTrainer::train_step(std::int64_t step) {
  TROUPE_CHECK(step == steps_done_, "step ", step, " after ", steps_done_, " steps");
  const auto start = std::chrono::steady_clock::now();
  const Batch batch = dataset_->train_batch(step, config_.train.batch_size);
  const bool remote_worker = remote_ && links_.rank > 0;
  if (remote_ && !remote_worker && !server_) server_ = std::make_unique<PsLinkServer>(*cluster_, *layout_, links_);

  const std::size_t local = workers_.size();
  std::vector<std::vector<Tensor>> losses(local);
  double norm = 0.0;
  const double begin = trace_ ? trace_->now_us() : 0.0;
  // Every worker actor runs its share at once; a thread per worker asks it and restarts it when its step
  // fails before its push (worker 0's clipping round waits for every push, so each worker is driven on
  // its own, not collected in order).
  WorkerAnswers answers;
  answers.steps.resize(local);
  answers.failures.resize(local);
  {
    auto drive = [&](std::size_t i) {
      WorkerAnswers a = drive_worker(i, step, batch);
      answers.steps[i] = std::move(a.steps[0]);
      answers.failures[i] = std::move(a.failures[0]);
    };
    std::vector<std::thread> drivers;
    for (std::size_t i = 1; i < local; ++i) drivers.emplace_back(drive, i);
    drive(0);
    for (auto& t : drivers) t.join();
  }
  for (std::size_t i = 0; i < local; ++i) {
    losses[i] = std::move(answers.steps[i].losses);
    if (workers_[i]->index == 0) norm = answers.steps[i].norm;
  }
  std::vector<std::optional<Error>>& errors = answers.failures;
  if (trace_) trace_->window(begin, trace_->now_us());
  if (escalated_) throw *escalated_;  // the cause; the other workers' failures (the shards stopped) its effect
  for (auto& e : errors) {
    if (!e) continue;
    if (server_) server_->throw_if_failed();  // a remote worker's failure is the cause; worker 0's error its effect
    // A dead shard is the cause of its workers' failed requests: its supervisor names it and its place.
    if (const auto dead = cluster_ ? cluster_->dead_shard() : std::nullopt)
      throw Error(ErrorKind::kIo, supervisor_->on_down("shard " + std::to_string(dead->first), step, dead->second).report +
                                      "\n(the workers saw: " + e->what() + ")");
    throw *e;
  }
  // Per-row losses in sample order: this process's workers, then (rank 0 of a tcp run) the others'.
  std::vector<double> rows = per_row_losses(losses);
  if (server_)
    for (const auto& theirs : server_->wait_for_reports(step)) rows.insert(rows.end(), theirs.begin(), theirs.end());
  ++steps_done_;
  {
    std::lock_guard lock(restart_mu_);
    supervisor_->intensity().recovered(clock_s());  // a restarted shard's step is done
  }

  StepStats s;
  s.step = step;
  s.lr = lr_at(config_.train, config_.optim.lr_or_default(), step);
  s.grad_norm = norm;
  double sum = 0.0;
  for (double x : rows) sum += x;  // sample order, as the single-device trainer adds them
  const auto n = static_cast<std::int64_t>(rows.size());
  s.loss = sum / static_cast<double>(n);
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  s.tokens_per_s = static_cast<double>(n) / s.seconds;
  return s;
}

void PsTrainer::refresh_worker0() {
  Worker& w0 = *workers_[0];
  const PsClient::Pulled got = w0.client->pull(steps_done_, {});
  const std::vector<Param*>& params = w0.model->params().all();
  for (std::size_t d = 0; d < params.size(); ++d) params[d]->value.copy_from(got.dense[d]);
}

EvalStats PsTrainer::evaluate() {
  refresh_worker0();
  return evaluate_models(*workers_[0]->backend, *dataset_, config_, {workers_[0]->model.get()});
}

void PsTrainer::load_weights(const std::string& path) {
  if (steps_done_ != 0)
    throw Error(ErrorKind::kUsage, "load_weights after training started: the parameter servers take initial weights only");
  if (remote_ && links_.rank > 0) return;  // its parameters come from the servers, which load them
  load_weights_into(initial_->params().all(), path);
  start_cluster();
}

void PsTrainer::save_weights(const std::string& path) {
  refresh_worker0();
  save_weights_from(workers_[0]->model->params().all(), path, config_);
}

void PsTrainer::kill_shard(int s) {
  if (!cluster_) throw Error(ErrorKind::kUsage, "kill_shard: the shards live in rank 0's process");
  cluster_->kill_shard(s);
}

std::size_t PsTrainer::optimizer_state_bytes() {
  if (!cluster_) throw Error(ErrorKind::kUsage, "optimizer_state_bytes: the shards live in rank 0's process");
  return cluster_->snapshot().state_bytes;
}

}  // namespace troupe::ps

namespace troupe::ps {

void PsTrainer::set_trace(TraceRecorder* trace) {
  trace_ = trace;
  tracks_.clear();
  for (const auto& w : workers_) tracks_.push_back(trace->track("worker " + std::to_string(w->index)));
}

CpuBackend& PsTrainer::backend() { return *workers_[0]->backend; }

std::vector<Param*> PsTrainer::params_in_order() const { return workers_[0]->model->params().all(); }

std::int64_t PsTrainer::param_count() const { return workers_[0]->model->params().numel(); }

}  // namespace troupe::ps
