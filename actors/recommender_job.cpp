// The recommender's Job: a WideDeepPsTrainer stepped one step at a time, with its evaluation and weights.
#include "actors/recommender_job.h"

#include "actors/ps/ps_trainer.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "runtime/config/weights_config.h"
#include "runtime/error.h"
#include "runtime/io/safetensors.h"
#include "runtime/optim/lr_schedule.h"
#include "runtime/supervision/fault_plan.h"

namespace troupe {

ps::WideDeepPsOptions recommender_options(const RunConfig& config) {
  const ModelConfig& m = config.model;
  const std::int64_t c = m.max_cardinality;
  ps::WideDeepPsOptions o;
  o.data.cardinalities = {c, c / 10, c * 3 / 100, c / 100, c / 1000, c / 10000};
  o.data.test_samples = config.data.test_samples;
  o.data.seed = config.train.seed;
  o.model.kind = RecommenderKind::deepfm;
  o.model.embed_dim = m.embed_dim;
  o.model.hidden = m.deep_hidden;
  o.model.wide_buckets = m.hashed_rows;
  o.model.seed = config.train.seed;
  o.ps.mode = config.ps.mode;
  o.ps.staleness = config.ps.staleness;
  o.ps.workers = config.parallel.data;
  o.ps.optim = config.optim;
  o.shards = config.ps.shards;
  o.steps = config.train.steps;
  o.batch_size = config.train.batch_size / config.parallel.data;
  const int threads = config.train.threads > 0 ? config.train.threads
                                               : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  o.threads = std::max(1, threads / config.parallel.data);
  o.timeout_s = ps::ps_wait_s(config);  // with worker processes restarted, a wait may span a restart
  o.grad_clip = config.train.grad_clip;
  o.max_restarts = config.fault.max_restarts;
  o.shard_snapshots = config.ps.shard_snapshots;
  o.restart_window_s = config.fault.restart_window_s;
  o.checkpoint_dir = config.train.checkpoint_dir;
  for (const supervision::FaultClause& c : supervision::parse_fault_plan(config.fault.inject).clauses)
    if (c.target == supervision::FaultTarget::worker || c.target == supervision::FaultTarget::shard) o.faults.push_back(c);
  o.lr_at = [train = config.train, lr = config.optim.lr_or_default()](std::int64_t t) { return lr_at(train, lr, t); };
  return o;
}

namespace {

class RecommenderJob final : public Job {
 public:
  RecommenderJob(const RunConfig& config, bool worker_processes, const ps::PsProcessOptions& processes,
                 std::function<void(std::int64_t)> before_step)
      : config_(config), options_(recommender_options(config)), before_step_(std::move(before_step)) {
    if (worker_processes) {
      procs_ = std::make_unique<ps::PsProcesses>(0, processes);
      trainer_ = std::make_unique<ps::WideDeepPsTrainer>(options_, procs_->links());
    } else {
      trainer_ = std::make_unique<ps::WideDeepPsTrainer>(options_);
    }
    const PsConfig& s = config.ps;
    summary_ = fmt::format("parameter servers, {} workers {} x {} shards, mode {}{}; deepfm's embedding tables and "
                           "first-order table sharded by rows\n",
                           config.parallel.data,
                           procs_ ? fmt::format("as processes over tcp (rendezvous {})", procs_->rendezvous())
                                  : std::string("(threads)"),
                           s.shards, s.mode, s.mode == PsMode::ssp ? fmt::format(" (staleness {})", s.staleness) : "");
  }
  ~RecommenderJob() override { trainer_.reset(); }  // its links first, then the processes

  StepStats train_step(std::int64_t step) override {
    TROUPE_CHECK(step == trainer_->steps_done(), "deepfm step ", step, " after ", trainer_->steps_done(), " steps");
    if (before_step_) before_step_(step);
    const double before = trainer_->train_seconds();
    trainer_->train(step + 1);
    StepStats s;
    s.step = step;
    s.loss = trainer_->losses().back();
    s.lr = options_.lr_at(step);
    s.seconds = trainer_->train_seconds() - before;
    s.tokens_per_s = s.seconds > 0 ? config_.train.batch_size / s.seconds : 0.0;
    return s;
  }

  EvalStats evaluate() override {
    const ps::ClickMetrics& m = metrics();
    EvalStats e;
    e.loss = m.log_loss;
    e.auc = m.auc;
    e.rows = m.samples;
    return e;
  }

  void load_weights(const std::string& path) override {
    throw Error(ErrorKind::kConfig, fmt::format("{}: initial weights for model.kind = deepfm are not built yet (its "
                                                "shards initialise their own rows); train without --init-from",
                                                path));
  }

  // Every dense parameter by name, then every table whole, as the shards hold them now.
  void save_weights(const std::string& path) override {
    ps::PsCluster::Model model = trainer_->snapshot();
    const WideDeep& w = trainer_->reference();
    NamedTensors tensors;
    const std::vector<Param*>& dense = w.dense().all();
    for (std::size_t d = 0; d < dense.size(); ++d) tensors.emplace_back(dense[d]->name, model.dense[d]);
    for (std::size_t t = 0; t < w.tables().size(); ++t) tensors.emplace_back(w.tables()[t].name, model.tables[t]);
    save_safetensors(path, tensors, weights_metadata(config_));
  }

  void set_trace(TraceRecorder* trace) override { trainer_->set_trace(trace); }
  std::string data_description() override { return trainer_->data().describe(); }
  int threads() override { return options_.threads; }
  std::int64_t parameter_count() override {
    const WideDeep& w = trainer_->reference();
    std::int64_t n = 0;
    for (const Param* p : w.dense().all()) n += p->value.numel();
    for (const TableSpec& t : w.tables()) n += t.rows * t.dim;
    return n;
  }
  std::string summary() override { return summary_; }
  std::string report() override {
    const ps::ClickMetrics& m = metrics();
    std::string out = fmt::format("deepfm test ({} held-out samples): log-loss {:.4f}, AUC {:.4f} (the hidden model's: "
                                  "log-loss {:.4f}, AUC {:.4f}); optimizer state {:.2f} MB over {} shards",
                                  m.samples, m.log_loss, m.auc, m.oracle_log_loss, m.oracle_auc,
                                  trainer_->snapshot().state_bytes / 1e6, config_.ps.shards);
    if (procs_) out += fmt::format("; {} worker restart{}", trainer_->restarts(), trainer_->restarts() == 1 ? "" : "s");
    return out + "\n" +
           (procs_ ? restarts_report(trainer_->restart_log(), 0, fmt::format("ps.max_restarts = {}", config_.ps.max_restarts))
                   : restarts_report(trainer_->restart_log(), config_.fault.max_restarts));
  }
  std::vector<supervision::Restart> restarts() override { return trainer_->restart_log(); }
  void finish() override {
    if (!procs_) return;
    trainer_->finish();
    trainer_.reset();  // closes the links: the workers see the end of the run
    const std::string failure = procs_->wait_all();
    if (!failure.empty()) throw Error(ErrorKind::kIo, "parameter-server " + failure + " (see its error above)");
  }
  // The shards' tables, dense parameters and optimizer state, gathered whole by name (PsCluster): a
  // checkpoint resumes under any shard or worker count, threads or processes. (Worker processes in async
  // or ssp mode cannot write one: config_loader refuses train.checkpoint_dir there, and
  // WideDeepPsTrainer::training_state() too.)
  std::string checkpoint_refusal() override { return ""; }
  TrainingState training_state(std::int64_t steps_done) override {
    TROUPE_CHECK(steps_done == trainer_->steps_done(), "deepfm checkpoint after ", steps_done, " steps, but ",
                 trainer_->steps_done(), " are done");
    return trainer_->training_state();
  }
  void restore_training_state(const TrainingState& state, const std::string& source) override {
    trainer_->restore(state, source);
  }

 private:
  // The test metrics of the parameters as of now (evaluated once per step count).
  const ps::ClickMetrics& metrics() {
    if (metrics_at_ != trainer_->steps_done()) {
      metrics_ = trainer_->evaluate();
      metrics_at_ = trainer_->steps_done();
    }
    return metrics_;
  }

  RunConfig config_;
  ps::WideDeepPsOptions options_;
  std::function<void(std::int64_t)> before_step_;
  std::string summary_;
  std::unique_ptr<ps::PsProcesses> procs_;
  std::unique_ptr<ps::WideDeepPsTrainer> trainer_;
  ps::ClickMetrics metrics_;
  std::int64_t metrics_at_ = -1;
};

}  // namespace

std::unique_ptr<Job> launch_recommender(const RunConfig& config, bool worker_processes,
                                        const ps::PsProcessOptions& processes,
                                        std::function<void(std::int64_t)> before_step) {
  return std::make_unique<RecommenderJob>(config, worker_processes, processes, std::move(before_step));
}

EvalStats evaluate_recommender_weights(const RunConfig& config, const std::string& path) {
  const ps::WideDeepPsOptions o = recommender_options(config);
  WideDeepOptions options = o.model;
  options.cardinalities = o.data.cardinalities;
  options.dense_features = o.data.dense_features;
  WideDeep model(options);
  const NamedTensors file = load_safetensors(path);
  auto tensor = [&](const std::string& name, const std::vector<std::int64_t>& shape) -> const Tensor& {
    for (const auto& [n, t] : file)
      if (n == name) {
        if (t.shape() != shape)
          throw Error(ErrorKind::kInput, fmt::format("{}: {} is {}, but this deepfm's is {}", path, name,
                                                     shape_str(t.shape()), shape_str(shape)));
        return t;
      }
    throw Error(ErrorKind::kInput, fmt::format("{}: no tensor {} (not a deepfm weights file?)", path, name));
  };
  for (Param* p : model.dense().all()) p->value = tensor(p->name, p->value.shape()).clone();
  std::vector<const Tensor*> tables;
  for (const TableSpec& t : model.tables()) tables.push_back(&tensor(t.name, {t.rows, t.dim}));
  const ClickLog data(o.data);
  const ps::ClickMetrics m =
      ps::evaluate_clicks(data, model, o.data.test_samples, o.threads, [&](const std::vector<TableLookup>& lookups) {
        std::vector<Tensor> rows;
        for (std::size_t t = 0; t < lookups.size(); ++t) {
          const Tensor& table = *tables[t];
          const std::int64_t dim = table.dim(1);
          Tensor r = Tensor::empty({static_cast<std::int64_t>(lookups[t].ids.size()), dim});
          for (std::size_t i = 0; i < lookups[t].ids.size(); ++i)
            std::copy(table.f32() + lookups[t].ids[i] * dim, table.f32() + (lookups[t].ids[i] + 1) * dim,
                      r.f32() + static_cast<std::int64_t>(i) * dim);
          rows.push_back(r);
        }
        return rows;
      });
  EvalStats e;
  e.loss = m.log_loss;
  e.auc = m.auc;
  e.rows = m.samples;
  return e;
}

void run_recommender_rank(const RunConfig& config, int rank, const ps::PsProcessOptions& processes,
                          std::function<void(std::int64_t)> before_step) {
  ps::PsProcesses procs(rank, processes);
  ps::WideDeepPsOptions options = recommender_options(config);
  options.before_step = std::move(before_step);
  ps::train_wide_deep_ps(options, procs.links());
}

}  // namespace troupe
