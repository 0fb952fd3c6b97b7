// train_wide_deep_ps: worker actors (lookup, pull, compute, push) around a PsCluster, then evaluation.
#include "actors/ps/wide_deep_ps.h"

#include <chrono>
#include <exception>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "actors/ps/ps_link.h"
#include "actors/ps/ps_worker_actor.h"
#include "models/binary_metrics.h"
#include "runtime/cpu/cpu_backend.h"

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

// Worker w's steps from `first` on: lookup, pull, forward/backward, then before_push(step, loss sum)
// and the push. progress(step, mean loss) for worker 0.
void run_worker(const WideDeepPsOptions& o, const ClickLog& data, const PsLayout& layout, int w, PsEndpoint& client,
                std::int64_t first, const std::function<void(std::int64_t, double)>& before_push,
                const std::function<void(std::int64_t, double)>& progress) {
  const int W = o.ps.workers, b = o.batch_size, global = W * b, T = layout.num_tables();
  const float scale = 1.0f / static_cast<float>(o.ps.mode == PsMode::sync ? global : b);
  CpuBackend be(o.threads);
  WideDeep model(model_options(o));
  std::vector<Param*>& params = model.dense().all();
  for (std::int64_t t = first; t < o.steps; ++t) {
    const ClickBatch batch = data.train_slice(t, global, static_cast<std::int64_t>(w) * b, static_cast<std::int64_t>(w + 1) * b);
    const std::vector<TableLookup> lookups = model.lookup(batch);
    std::vector<std::vector<std::int64_t>> ids;
    for (const auto& l : lookups) ids.push_back(l.ids);
    PsPulled got = client.pull(t, ids);
    for (std::size_t d = 0; d < params.size(); ++d) {
      params[d]->value = got.dense[d];
      params[d]->grad = Tensor::zeros(params[d]->value.shape());  // fresh: the shard may keep the pushed one
    }
    WideDeep::Pass pass = model.forward_backward(be, batch, lookups, got.tables, scale);
    std::vector<Tensor> dense;
    for (Param* p : params) dense.push_back(p->grad);
    std::vector<SparseRows> sparse(static_cast<std::size_t>(T));
    for (int i = 0; i < T; ++i) sparse[static_cast<std::size_t>(i)] = {lookups[static_cast<std::size_t>(i)].ids, pass.table_grads[static_cast<std::size_t>(i)]};
    before_push(t, pass.loss_sum);
    client.push(t, dense, sparse);
    if (w == 0 && progress) progress(t, pass.loss_sum / b);
  }
}

// Losses per step (worker order), test metrics through worker 0's client, and the shards' state.
WideDeepPsResult finish_result(const WideDeepPsOptions& o, const ClickLog& data, PsCluster& cluster, PsEndpoint& client0,
                               const std::vector<std::vector<double>>& loss_sums, double seconds) {
  const int global = o.ps.workers * o.batch_size;
  WideDeepPsResult r;
  r.seconds = seconds;
  r.samples_per_s = static_cast<double>(o.steps) * global / r.seconds;
  for (const auto& step : loss_sums) {
    double sum = 0;
    for (double l : step) sum += l;  // worker order
    r.losses.push_back(sum / global);
  }
  // Evaluation on the held-out split through worker 0's client, after its last step.
  const std::int64_t n = o.eval_samples < 0 ? o.data.test_samples : std::min(o.eval_samples, o.data.test_samples);
  if (n > 0) {
    CpuBackend be(o.threads);
    WideDeep model(model_options(o));
    std::vector<float> probs, labels, truth;
    for (std::int64_t first = 0; first < n; first += 4096) {
      const ClickBatch batch = data.test_batch(first, std::min<std::int64_t>(4096, n - first));
      const auto lookups = model.lookup(batch);
      std::vector<std::vector<std::int64_t>> ids;
      for (const auto& l : lookups) ids.push_back(l.ids);
      PsPulled got = client0.pull(o.steps, ids);
      for (std::size_t d = 0; d < model.dense().all().size(); ++d) model.dense().all()[d]->value = got.dense[d];
      const Tensor p = model.predict(be, batch, lookups, got.tables);
      for (std::int64_t i = 0; i < batch.size(); ++i) {
        probs.push_back(p.f32()[i]);
        labels.push_back(batch.labels.f32()[i]);
        truth.push_back(batch.truth.f32()[i]);
      }
    }
    r.eval_samples = n;
    r.test_auc = roc_auc(probs, labels);
    r.test_log_loss = log_loss(probs, labels);
    r.oracle_auc = roc_auc(truth, labels);
    r.oracle_log_loss = log_loss(truth, labels);
  }
  PsCluster::Model m = cluster.snapshot();
  r.state_bytes = m.state_bytes;
  if (o.keep_model) r.model = std::move(m);
  return r;
}

}  // namespace

WideDeepPsResult train_wide_deep_ps(const WideDeepPsOptions& o, const std::function<void(std::int64_t, double)>& progress) {
  validate(o);
  const ClickLog data(o.data);
  const WideDeep reference(model_options(o));  // initial values and shapes
  const int W = o.ps.workers;
  auto layout = std::make_shared<const PsLayout>(ps_params(reference), o.shards);
  PsCluster cluster(layout, o.ps, ps_init(reference), o.timeout_s);
  std::vector<std::vector<double>> loss_sums(static_cast<std::size_t>(o.steps), std::vector<double>(static_cast<std::size_t>(W)));
  std::vector<std::unique_ptr<PsClient>> clients;
  for (int w = 0; w < W; ++w) clients.push_back(cluster.client(w));
  const auto start = std::chrono::steady_clock::now();
  // Every worker is an actor beside the shards, running its whole training loop on request (async and
  // ssp workers pace themselves against the shards' versions, not against each other's steps).
  std::vector<WorkerJob> jobs;
  for (int w = 0; w < W; ++w)
    jobs.push_back([&, w](std::int64_t, const Batch&) {
      run_worker(o, data, *layout, w, *clients[static_cast<std::size_t>(w)], 0,
                 [&](std::int64_t t, double loss) { loss_sums[static_cast<std::size_t>(t)][static_cast<std::size_t>(w)] = loss; },
                 progress);
      return WorkerStep{};
    });
  if (std::optional<Error> failure = run_worker_actors(cluster.system(), std::move(jobs), 0, Batch{})) throw *failure;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return finish_result(o, data, cluster, *clients[0], loss_sums, seconds);
}

WideDeepPsResult train_wide_deep_ps(const WideDeepPsOptions& o, PsLinks links,
                                    const std::function<void(std::int64_t, double)>& progress) {
  validate(o);
  const int W = o.ps.workers;
  TROUPE_CHECK(links.rank >= 0 && links.rank < W && static_cast<int>(links.links.size()) == (links.rank == 0 ? W - 1 : 1),
               "wide & deep ps rank ", links.rank, " with ", links.links.size(), " links for ", W, " workers");
  const ClickLog data(o.data);
  const WideDeep reference(model_options(o));
  auto layout = std::make_shared<const PsLayout>(ps_params(reference), o.shards);
  if (links.rank > 0) {  // a worker process: its slices, its losses to rank 0, then goodbye
    try {
      RemotePsClient client(*links.links[0], layout, links.rank);
      run_worker(o, data, *layout, links.rank, client, client.hello(),
                 [&](std::int64_t t, double loss) { client.report(t, {loss}); }, {});
      client.bye();
    } catch (...) {
      if (links.abort) links.abort();  // rank 0 sees this worker die at once
      throw;
    }
    return {};
  }
  PsCluster cluster(layout, o.ps, ps_init(reference), o.timeout_s);
  std::vector<std::vector<double>> loss_sums(static_cast<std::size_t>(o.steps), std::vector<double>(static_cast<std::size_t>(W)));
  auto client0 = cluster.client(0);
  PsLinkServer server(cluster, *layout, links);
  const auto start = std::chrono::steady_clock::now();
  try {
    run_worker(o, data, *layout, 0, *client0, 0,
               [&](std::int64_t t, double loss) { loss_sums[static_cast<std::size_t>(t)][0] = loss; }, progress);
    for (std::int64_t t = 0; t < o.steps; ++t) {
      const auto reports = server.wait_for_reports(t);
      for (int w = 1; w < W; ++w) {
        const auto& mine = reports[static_cast<std::size_t>(w - 1)];
        if (mine.size() != 1)
          throw Error(ErrorKind::kIo, fmt::format("ps worker {} reported {} losses for step {}, expected 1", w, mine.size(), t));
        loss_sums[static_cast<std::size_t>(t)][static_cast<std::size_t>(w)] = mine[0];
      }
    }
  } catch (const Error&) {
    server.throw_if_failed();  // a worker's death is the cause; worker 0's error its effect
    throw;                     // (the server's destructor breaks the links)
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  WideDeepPsResult r = finish_result(o, data, cluster, *client0, loss_sums, seconds);
  server.finish(true);
  return r;
}

}  // namespace troupe::ps
