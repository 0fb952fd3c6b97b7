// train_wide_deep_ps: worker threads (lookup, pull, compute, push) around a PsCluster, then evaluation.
#include "actors/ps/wide_deep_ps.h"

#include <chrono>
#include <exception>
#include <map>
#include <thread>

#include <fmt/format.h>

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

WideDeepPsResult train_wide_deep_ps(const WideDeepPsOptions& o, const std::function<void(std::int64_t, double)>& progress) {
  validate(o);
  const ClickLog data(o.data);
  const WideDeep reference(model_options(o));  // initial values and shapes
  const int W = o.ps.workers, b = o.batch_size;
  const int global = W * b;
  auto layout = std::make_shared<const PsLayout>(ps_params(reference), o.shards);
  PsCluster cluster(layout, o.ps, ps_init(reference), o.timeout_s);
  const float scale = 1.0f / static_cast<float>(o.ps.mode == PsMode::sync ? global : b);
  const int T = layout->num_tables();

  std::vector<std::vector<double>> loss_sums(static_cast<std::size_t>(o.steps), std::vector<double>(static_cast<std::size_t>(W)));
  std::vector<std::unique_ptr<PsClient>> clients;
  for (int w = 0; w < W; ++w) clients.push_back(cluster.client(w));
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(W));
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (int w = 0; w < W; ++w)
    workers.emplace_back([&, w] {
      try {
        CpuBackend be(o.threads);
        WideDeep model(model_options(o));
        PsClient& client = *clients[static_cast<std::size_t>(w)];
        std::vector<Param*>& params = model.dense().all();
        for (std::int64_t t = 0; t < o.steps; ++t) {
          const ClickBatch batch = data.train_slice(t, global, static_cast<std::int64_t>(w) * b, static_cast<std::int64_t>(w + 1) * b);
          const std::vector<TableLookup> lookups = model.lookup(batch);
          std::vector<std::vector<std::int64_t>> ids;
          for (const auto& l : lookups) ids.push_back(l.ids);
          PsClient::Pulled got = client.pull(t, ids);
          for (std::size_t d = 0; d < params.size(); ++d) {
            params[d]->value = got.dense[d];
            params[d]->grad = Tensor::zeros(params[d]->value.shape());  // fresh: the shard may keep the pushed one
          }
          WideDeep::Pass pass = model.forward_backward(be, batch, lookups, got.tables, scale);
          std::vector<Tensor> dense;
          for (Param* p : params) dense.push_back(p->grad);
          std::vector<SparseRows> sparse(static_cast<std::size_t>(T));
          for (int i = 0; i < T; ++i) sparse[static_cast<std::size_t>(i)] = {lookups[static_cast<std::size_t>(i)].ids, pass.table_grads[static_cast<std::size_t>(i)]};
          client.push(t, dense, sparse);
          loss_sums[static_cast<std::size_t>(t)][static_cast<std::size_t>(w)] = pass.loss_sum;
          if (w == 0 && progress) progress(t, pass.loss_sum / b);
        }
      } catch (...) {
        errors[static_cast<std::size_t>(w)] = std::current_exception();
      }
    });
  for (auto& t : workers) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);

  WideDeepPsResult r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
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
      PsClient::Pulled got = clients[0]->pull(o.steps, ids);
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

}  // namespace troupe::ps
