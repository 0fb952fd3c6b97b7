// WideDeepPsTrainer: worker actors (lookup, pull, compute, push) around a PsCluster, step ranges, evaluation.
#include "actors/ps/wide_deep_ps.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "actors/actor_system.h"
#include "actors/ps/ps_link.h"
#include "actors/ps/shard_supervision.h"
#include "actors/ps/ps_worker_actor.h"
#include "models/binary_metrics.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/optim/clip_grad.h"

namespace troupe::ps {

std::vector<PsParamSpec> ps_params(const WideDeep& model) {
  std::vector<PsParamSpec> specs;
  for (const Param* p : model.dense().all()) specs.push_back({p->name, p->value.shape(), false});
  for (const TableSpec& t : model.tables()) specs.push_back({t.name, {t.rows, t.dim}, true});
  return specs;
}

PsInit ps_init(const WideDeep& model) {
  std::map<std::string, int> table_index;
  for (std::size_t t = 0; t < model.tables().size(); ++t) table_index[model.tables()[t].name] = static_cast<int>(t);
  PsInit init;
  init.dense = [&model](const std::string& name) { return model.initial_dense(name); };
  init.table_rows = [&model, table_index](const std::string& name, std::span<const std::int64_t> rows, const Tensor& out) {
    model.init_rows(table_index.at(name), rows, out);
  };
  return init;
}

namespace {

WideDeepOptions model_options(const WideDeepPsOptions& o) {
  WideDeepOptions m = o.model;
  m.cardinalities = o.data.cardinalities;
  m.dense_features = o.data.dense_features;
  return m;
}

}  // namespace

void validate(const WideDeepPsOptions& o) {
  auto bad = [](const std::string& what) { throw Error(ErrorKind::kConfig, what); };
  validate(o.ps);
  if (o.shards < 1) bad(fmt::format("ps.shards = {}: must be >= 1", o.shards));
  if (o.steps < 1) bad(fmt::format("steps = {}: must be >= 1", o.steps));
  if (o.batch_size < 1) bad(fmt::format("batch size = {}: must be >= 1 (samples per worker and step)", o.batch_size));
  if (o.threads < 1) bad(fmt::format("threads = {}: must be >= 1", o.threads));
  if (!(o.timeout_s > 0)) bad(fmt::format("timeout = {} s: must be > 0", o.timeout_s));
  ClickLog data(o.data);
  WideDeep model(model_options(o));
}

namespace {

// Async and ssp: a worker clips its own gradient — every dense parameter, then every table's rows — by
// their global 2-norm, as clip_grad_norm does on one device.
void clip_locally(std::vector<Param*>& params, std::vector<Tensor>& table_grads, double max_norm) {
  double sum = 0;
  for (double s : grad_sum_squares(params)) sum += s;
  for (const Tensor& g : table_grads)
    for (float x : g.span_f32()) sum += static_cast<double>(x) * x;
  const double coefficient = clip_coefficient(std::sqrt(sum), max_norm);
  if (coefficient == 1.0) return;
  scale_grads(params, coefficient);
  const float c = static_cast<float>(coefficient);
  if (c != 1.0f)
    for (Tensor& g : table_grads)
      for (float& x : g.span_f32()) x *= c;
}

// Worker w's steps [first, end): lookup, pull, forward/backward, then before_push(step, loss sum), the
// push and (sync, worker 0) the clipping round. progress(step, mean loss) for worker 0.
// With `trace`, its pull, forward+backward and push (and clip round) spans go on `track`.
void run_worker(const WideDeepPsOptions& o, const ClickLog& data, const PsLayout& layout, int w, PsEndpoint& client,
                std::int64_t first, std::int64_t end, const std::function<void(std::int64_t, double)>& before_push,
                const std::function<void(std::int64_t, double)>& progress,
                const std::function<void(std::int64_t)>& before_step = {}, TraceRecorder* trace = nullptr,
                int track = -1) {
  const int W = o.ps.workers, b = o.batch_size, global = W * b, T = layout.num_tables();
  const float scale = 1.0f / static_cast<float>(o.ps.mode == PsMode::sync ? global : b);
  CpuBackend be(o.threads);
  WideDeep model(model_options(o));
  std::vector<Param*>& params = model.dense().all();
  for (std::int64_t t = first; t < end; ++t) {
    if (before_step) before_step(t);
    const ClickBatch batch = data.train_slice(t, global, static_cast<std::int64_t>(w) * b, static_cast<std::int64_t>(w + 1) * b);
    const std::vector<TableLookup> lookups = model.lookup(batch);
    std::vector<std::vector<std::int64_t>> ids;
    for (const auto& l : lookups) ids.push_back(l.ids);
    const double t0 = trace ? TraceRecorder::now_us() : 0.0;
    PsPulled got = client.pull(t, ids);
    const double t1 = trace ? TraceRecorder::now_us() : 0.0;
    for (std::size_t d = 0; d < params.size(); ++d) {
      params[d]->value = got.dense[d];
      params[d]->grad = Tensor::zeros(params[d]->value.shape());  // fresh: the shard may keep the pushed one
    }
    WideDeep::Pass pass = model.forward_backward(be, batch, lookups, got.tables, scale);
    if (o.grad_clip > 0 && o.ps.mode != PsMode::sync) clip_locally(params, pass.table_grads, o.grad_clip);
    std::vector<Tensor> dense;
    for (Param* p : params) dense.push_back(p->grad);
    std::vector<SparseRows> sparse(static_cast<std::size_t>(T));
    for (int i = 0; i < T; ++i) sparse[static_cast<std::size_t>(i)] = {lookups[static_cast<std::size_t>(i)].ids, pass.table_grads[static_cast<std::size_t>(i)]};
    before_push(t, pass.loss_sum);
    const double t2 = trace ? TraceRecorder::now_us() : 0.0;
    client.push(t, dense, sparse, o.lr_at ? o.lr_at(t) : -1.0);
    const double t3 = trace ? TraceRecorder::now_us() : 0.0;
    if (w == 0 && o.ps.clip) client.clip(t, o.grad_clip);
    if (trace) {
      trace->span(track, "pull", "recv", t0, t1);
      trace->span(track, "forward+backward", "forward", t1, t2);  // one pass computes both
      trace->span(track, "push", "send", t2, t3);
      if (w == 0 && o.ps.clip) trace->span(track, "clip round", "optimizer", t3, TraceRecorder::now_us());
    }
    if (w == 0 && progress) progress(t, pass.loss_sum / b);
  }
}

WideDeepPsOptions with_clip(WideDeepPsOptions o) {
  o.ps.clip = o.grad_clip > 0 && o.ps.mode == PsMode::sync;
  return o;
}

}  // namespace

WideDeepPsTrainer::WideDeepPsTrainer(WideDeepPsOptions options, std::function<void(std::int64_t, double)> progress)
    : o_(with_clip(std::move(options))), progress_(std::move(progress)) {
  validate(o_);
  data_ = std::make_unique<const ClickLog>(o_.data);
  reference_ = std::make_unique<const WideDeep>(model_options(o_));
  layout_ = std::make_shared<const PsLayout>(ps_params(*reference_), o_.shards);
  cluster_ = std::make_unique<PsCluster>(layout_, o_.ps, ps_init(*reference_), o_.timeout_s);
  supervise_shards();
  for (int w = 0; w < o_.ps.workers; ++w) clients_.push_back(cluster_->client(w));
}

WideDeepPsTrainer::WideDeepPsTrainer(WideDeepPsOptions options, PsLinks links,
                                     std::function<void(std::int64_t, double)> progress)
    : o_(with_clip(std::move(options))), progress_(std::move(progress)) {
  validate(o_);
  TROUPE_CHECK(links.rank == 0 && static_cast<int>(links.links.size()) == o_.ps.workers - 1,
               "wide & deep ps trainer on rank ", links.rank, " with ", links.links.size(), " links for ", o_.ps.workers,
               " workers");
  data_ = std::make_unique<const ClickLog>(o_.data);
  reference_ = std::make_unique<const WideDeep>(model_options(o_));
  layout_ = std::make_shared<const PsLayout>(ps_params(*reference_), o_.shards);
  cluster_ = std::make_unique<PsCluster>(layout_, o_.ps, ps_init(*reference_), o_.timeout_s);
  supervise_shards();
  clients_.push_back(cluster_->client(0));
  links_ = std::make_unique<PsLinks>(std::move(links));
  // Hellos wait for the first train() (or finish()): a resumed run's shards are restored by then.
  server_ = std::make_unique<PsLinkServer>(*cluster_, *layout_, *links_, false);
}

void WideDeepPsTrainer::open_links() {
  if (!server_ || links_open_) return;
  server_->open(steps_done_);
  links_open_ = true;
}

WideDeepPsTrainer::~WideDeepPsTrainer() {
  server_.reset();  // breaks the links unless finish() ran: the workers see the run end
  clients_.clear();
  cluster_.reset();
}

void WideDeepPsTrainer::train(std::int64_t end) {
  const std::int64_t first = steps_done_;
  if (end <= first) return;
  open_links();
  const int W = o_.ps.workers;
  std::vector<std::vector<double>> loss_sums(static_cast<std::size_t>(end - first), std::vector<double>(static_cast<std::size_t>(W)));
  auto keep = [&](int w) {
    return [&, w](std::int64_t t, double loss) { loss_sums[static_cast<std::size_t>(t - first)][static_cast<std::size_t>(w)] = loss; };
  };
  const auto start = std::chrono::steady_clock::now();
  const double begin_us = trace_ ? TraceRecorder::now_us() : 0.0;
  if (!server_) {
    // Every worker is an actor beside the shards, running its steps on request (async and ssp workers
    // pace themselves against the shards' versions, not against each other's steps), each driven by a
    // thread of its own that restarts it when a step fails before its push (worker 0's clipping round
    // and the sync pulls wait for every worker's push, so no worker waits for another's driver).
    std::vector<std::optional<Error>> failures(static_cast<std::size_t>(W));
    {
      std::vector<std::thread> drivers;
      for (int w = 1; w < W; ++w)
        drivers.emplace_back([&, w] { failures[static_cast<std::size_t>(w)] = drive_worker(w, first, end, keep(w)); });
      failures[0] = drive_worker(0, first, end, keep(0));
      for (auto& t : drivers) t.join();
    }
    if (escalated_) throw *escalated_;  // the cause; the other workers' failures (the shards stopped) its effect
    for (auto& f : failures)
      if (f) throw *f;
    std::lock_guard lock(restart_mu_);
    intensity_.recovered(clock_s());  // the steps of every restart so far are done
  } else {
    try {
      run_worker(o_, *data_, *layout_, 0, *clients_[0], first, end, keep(0), progress_, {}, trace_, trace_ ? tracks_[0] : -1);
      for (std::int64_t t = first; t < end; ++t) {
        const auto reports = server_->wait_for_reports(t);
        for (int w = 1; w < W; ++w) {
          const auto& mine = reports[static_cast<std::size_t>(w - 1)];
          if (mine.size() != 1)
            throw Error(ErrorKind::kIo, fmt::format("ps worker {} reported {} losses for step {}, expected 1", w, mine.size(), t));
          loss_sums[static_cast<std::size_t>(t - first)][static_cast<std::size_t>(w)] = mine[0];
        }
      }
    } catch (const Error&) {
      server_->throw_if_failed();  // a worker's death is the cause; worker 0's error its effect
      throw;                       // (the server's destructor breaks the links)
    }
  }
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (trace_) trace_->window(begin_us, TraceRecorder::now_us());
  const int global = W * o_.batch_size;
  for (const auto& step : loss_sums) {
    double sum = 0;
    for (double l : step) sum += l;  // worker order
    losses_.push_back(sum / global);
  }
  steps_done_ = end;
}

double WideDeepPsTrainer::clock_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

bool WideDeepPsTrainer::take_worker_fault(int w, std::int64_t step) {
  std::lock_guard lock(restart_mu_);
  return supervision::take_clause(worker_faults_, w, step);
}

std::optional<Error> WideDeepPsTrainer::drive_worker(int w, std::int64_t first, std::int64_t end,
                                                     const std::function<void(std::int64_t, double)>& keep) {
  struct At {
    std::atomic<std::int64_t> step{-1}, pushing{-1};  // the step it is in; the step whose push it began
  };
  std::int64_t from = first;
  for (;;) {
    auto at = std::make_shared<At>();
    WorkerJob job = [&, w, from, at](std::int64_t, const Batch&) {
      auto before_push = [&, w, at](std::int64_t t, double loss) {
        if (take_worker_fault(w, t))  // fault.inject: as a worker's bug or a failing device would
          throw Error(ErrorKind::kInternal,
                      fmt::format("fault.inject: throw worker {} at step {} (after its backward, before its push)", w, t));
        keep(t, loss);
        at->pushing = t;
      };
      run_worker(o_, *data_, *layout_, w, *clients_[static_cast<std::size_t>(w)], from, end, before_push, progress_,
                 [at](std::int64_t t) { at->step = t; }, trace_, trace_ ? tracks_[static_cast<std::size_t>(w)] : -1);
      return WorkerStep{};
    };
    caf::actor actor = cluster_->system().get().spawn<caf::detached>(ps_worker_actor, std::move(job));
    WorkerAnswers answer = ask_workers(cluster_->system().get(), {actor}, from, Batch{});
    {
      caf::scoped_actor self(cluster_->system().get());
      self->send_exit(actor, caf::exit_reason::user_shutdown);
      self->wait_for(actor);
    }
    if (!answer.failures[0]) return std::nullopt;
    const std::int64_t step = at->step.load();
    if (step < 0 || !restart_worker(w, step, at->pushing.load() == step, *answer.failures[0])) return answer.failures[0];
    // One-for-one: a fresh actor (above), model and backend (run_worker's own) and client run the step again.
    // It had not begun its push, so the shards hold nothing of its step: the re-run adds exactly what the
    // first attempt would have.
    clients_[static_cast<std::size_t>(w)] = cluster_->client(w);
    from = step;
    std::lock_guard lock(restart_mu_);
    intensity_.rerun(clock_s());
  }
}

bool WideDeepPsTrainer::restart_worker(int w, std::int64_t step, bool pushed, const Error& failure) {
  std::lock_guard lock(restart_mu_);
  if (escalated_ || pushed || cluster_->dead_shard()) return false;
  const std::string child = fmt::format("worker {}", w);
  const std::string what = failure.what();
  const std::string cause = what.substr(0, what.find('\n'));
  const double died = clock_s();
  if (!intensity_.allow(child, step, cause, died)) {
    escalated_ = Error(ErrorKind::kIo, intensity_.escalation(fmt::format("parameter-server worker actor {} (worker {} of "
                                                                         "parallel.data = {}, a thread of rank 0's process)",
                                                                         child, w, o_.ps.workers),
                                                             step, cause, o_.checkpoint_dir));
    cluster_->abort();  // the other workers may wait on the shards for this one's push
    return false;
  }
  std::fprintf(stderr, "troupe: ps worker %d failed in step %lld: %s\ntroupe: restarted ps worker %d (restart %d of at most "
                       "%d within %g s); it runs step %lld again\n",
               w, static_cast<long long>(step), cause.c_str(), w, intensity_.recent(died), intensity_.max_restarts(),
               intensity_.window_s(), static_cast<long long>(step));
  return true;
}

void WideDeepPsTrainer::supervise_shards() {
  {
    std::lock_guard lock(restart_mu_);
    intensity_ = supervision::RestartIntensity(o_.max_restarts, o_.restart_window_s);
    for (const supervision::FaultClause& c : o_.faults)
      if (c.target == supervision::FaultTarget::worker) worker_faults_.push_back(c);
  }
  ShardRestartBook book{.mu = &restart_mu_,
                        .intensity = &intensity_,
                        .escalated = &escalated_,
                        .clock_s = [this] { return clock_s(); },
                        .place = [this](const std::string& child) {
                          return fmt::format("parameter-server shard actor {} ({} of ps.shards = {}, in rank 0's process)",
                                             child, child, o_.shards);
                        },
                        .checkpoint_dir = o_.checkpoint_dir};
  std::optional<PsShardSupervision> sup =
      shard_supervision(o_.faults, o_.ps.mode, o_.shard_snapshots, o_.max_restarts, std::move(book));
  if (sup) cluster_->supervise(std::move(*sup));
}

ClickMetrics evaluate_clicks(const ClickLog& data, WideDeep& model, std::int64_t n, int threads,
                             const std::function<std::vector<Tensor>(const std::vector<TableLookup>&)>& rows_for) {
  ClickMetrics m;
  if (n <= 0) return m;
  CpuBackend be(threads);
  std::vector<float> probs, labels, truth;
  for (std::int64_t first = 0; first < n; first += 4096) {
    const ClickBatch batch = data.test_batch(first, std::min<std::int64_t>(4096, n - first));
    const auto lookups = model.lookup(batch);
    const std::vector<Tensor> rows = rows_for(lookups);
    const Tensor p = model.predict(be, batch, lookups, rows);
    for (std::int64_t i = 0; i < batch.size(); ++i) {
      probs.push_back(p.f32()[i]);
      labels.push_back(batch.labels.f32()[i]);
      truth.push_back(batch.truth.f32()[i]);
    }
  }
  m.samples = n;
  m.auc = roc_auc(probs, labels);
  m.log_loss = log_loss(probs, labels);
  m.oracle_auc = roc_auc(truth, labels);
  m.oracle_log_loss = log_loss(truth, labels);
  return m;
}

ClickMetrics WideDeepPsTrainer::evaluate() {
  const std::int64_t n = o_.eval_samples < 0 ? o_.data.test_samples : std::min(o_.eval_samples, o_.data.test_samples);
  WideDeep model(model_options(o_));
  return evaluate_clicks(*data_, model, n, o_.threads, [&](const std::vector<TableLookup>& lookups) {
    std::vector<std::vector<std::int64_t>> ids;
    for (const auto& l : lookups) ids.push_back(l.ids);
    PsPulled got = clients_[0]->pull(steps_done_, ids);
    for (std::size_t d = 0; d < model.dense().all().size(); ++d) model.dense().all()[d]->value = got.dense[d];
    return got.tables;
  });
}

WideDeepPsResult WideDeepPsTrainer::result() {
  WideDeepPsResult r;
  r.losses = losses_;
  r.seconds = seconds_;
  r.samples_per_s = seconds_ > 0 ? static_cast<double>(steps_done_) * o_.ps.workers * o_.batch_size / seconds_ : 0.0;
  const ClickMetrics m = evaluate();
  r.eval_samples = m.samples;
  r.test_auc = m.auc;
  r.test_log_loss = m.log_loss;
  r.oracle_auc = m.oracle_auc;
  r.oracle_log_loss = m.oracle_log_loss;
  PsCluster::Model model = cluster_->snapshot();
  r.state_bytes = model.state_bytes;
  if (o_.keep_model) r.model = std::move(model);
  return r;
}

PsCluster::Model WideDeepPsTrainer::snapshot() { return cluster_->snapshot(); }

TrainingState WideDeepPsTrainer::training_state() {
  if (server_) {
    // A worker process reports its loss before it pushes: wait until every shard has applied the last
    // step (a sync pull for it is answered then). Pushes of the next step that arrive meanwhile stay
    // buffered, outside the state.
    if (o_.ps.mode != PsMode::sync)
      throw Error(ErrorKind::kConfig, fmt::format("checkpoints with workers as processes need ps.mode = sync (got {}): "
                                                  "their later pushes reach the shards at any time",
                                                  o_.ps.mode));
    clients_[0]->pull(steps_done_, {}, false);
  }
  return cluster_->training_state(steps_done_);
}

void WideDeepPsTrainer::restore(const TrainingState& state, const std::string& source) {
  if (links_open_)
    throw Error(ErrorKind::kUsage, fmt::format("{}: restore before the first train() (the worker processes have started)",
                                               source));
  cluster_->restore(state, source);
  steps_done_ = state.step;
}

void WideDeepPsTrainer::set_trace(TraceRecorder* trace) {
  tracks_.clear();
  if (trace)
    for (int w = 0; w < (server_ ? 1 : o_.ps.workers); ++w) tracks_.push_back(trace->track("worker " + std::to_string(w)));
  cluster_->set_trace(trace);
  trace_ = trace;
}

int WideDeepPsTrainer::restarts() const { return server_ ? server_->restarts() : 0; }

std::vector<supervision::Restart> WideDeepPsTrainer::restart_log() const {
  std::vector<supervision::Restart> log;
  {
    std::lock_guard lock(restart_mu_);
    log = intensity_.restarts();
  }
  if (server_)
    for (supervision::Restart& r : server_->restart_log()) log.push_back(std::move(r));
  return log;
}

void WideDeepPsTrainer::finish() {
  open_links();  // a run with nothing left to train: the workers learn so and say goodbye
  if (server_) server_->finish(true);
}

WideDeepPsResult train_wide_deep_ps(const WideDeepPsOptions& o, const std::function<void(std::int64_t, double)>& progress) {
  WideDeepPsTrainer trainer(o, progress);
  trainer.train(o.steps);
  return trainer.result();
}

WideDeepPsResult train_wide_deep_ps(const WideDeepPsOptions& o, PsLinks links,
                                    const std::function<void(std::int64_t, double)>& progress) {
  validate(o);
  const int W = o.ps.workers;
  TROUPE_CHECK(links.rank >= 0 && links.rank < W && static_cast<int>(links.links.size()) == (links.rank == 0 ? W - 1 : 1),
               "wide & deep ps rank ", links.rank, " with ", links.links.size(), " links for ", W, " workers");
  if (links.rank > 0) {  // a worker process: its slices, its losses to rank 0, then goodbye
    const WideDeepPsOptions mine = with_clip(o);
    const ClickLog data(mine.data);
    const WideDeep reference(model_options(mine));
    auto layout = std::make_shared<const PsLayout>(ps_params(reference), mine.shards);
    try {
      RemotePsClient client(*links.links[0], layout, links.rank);
      run_worker(mine, data, *layout, links.rank, client, client.hello(), mine.steps,
                 [&](std::int64_t t, double loss) { client.report(t, {loss}); }, {}, mine.before_step);
      client.bye();
    } catch (...) {
      if (links.abort) links.abort();  // rank 0 sees this worker die at once
      throw;
    }
    return {};
  }
  WideDeepPsTrainer trainer(o, std::move(links), progress);
  trainer.train(o.steps);
  WideDeepPsResult r = trainer.result();
  trainer.finish();
  return r;
}

}  // namespace troupe::ps
