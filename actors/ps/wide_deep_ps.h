// Owns WideDeepPsTrainer and train_wide_deep_ps: the click-log recommender (Wide & Deep or DeepFM,
// WideDeepOptions::kind) trained by W workers against a cluster of parameter-server shard actors — the
// engine of the recommender example, of `troupe train` with model.kind = deepfm (actors/recommender_job.h)
// and of their tests. Both kinds have the same tables (field embeddings, then the wide/first-order table).
//
// Parameters: WideDeep's dense parameters (dense indices 0.. in WideDeep::dense() order) and its tables
// (one embedding table per field, then the wide table), sharded by PsLayout. Worker w, step t:
//   its slice [w b, (w + 1) b) of the global batch ClickLog::train_batch(t, W b)  (b = batch_size)
//   -> lookup the rows it touches -> pull them and every dense parameter (the mode decides when)
//   -> forward/backward on its own CpuBackend -> push dense gradients and sparse rows.
// Loss scaling: sync sums the W pushes, so each worker scales by 1 / (W b): the update is the one a
// single process makes on the whole global batch. async and ssp apply each push as a step of its own,
// so each worker scales by 1 / b (its own mean).
// Clipping (grad_clip > 0), as PsTrainer clips: sync, worker 0 runs the shards' clipping round over the
// summed gradient (dense parameters and table rows); async and ssp, each worker clips its own gradient.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "actors/ps/ps_actor.h"
#include "actors/ps/ps_link_server.h"
#include "models/wide_deep.h"
#include "runtime/checkpoint/training_state.h"
#include "runtime/data/click_log.h"
#include "runtime/supervision/fault_plan.h"
#include "runtime/supervision/restart_intensity.h"
#include "runtime/trace/trace.h"

namespace troupe::ps {

struct WideDeepPsOptions {
  ClickLogOptions data;
  WideDeepOptions model;         // cardinalities and dense_features are taken from `data`
  PsOptions ps;                  // mode, staleness, workers, optimizer
  int shards = 1;
  std::int64_t steps = 1000;
  int batch_size = 256;          // per worker
  int threads = 1;               // compute threads per worker
  double timeout_s = 60.0;
  std::int64_t eval_samples = -1;  // test samples to evaluate (-1: the whole test split, 0: none)
  bool keep_model = false;       // return the final parameters
  double grad_clip = 0;          // clip by the global 2-norm (0: off)
  // The learning rate of step t (train.lr_schedule); empty: ps.optim.lr every step.
  std::function<double(std::int64_t)> lr_at;
  // A worker process's hook as each of its steps begins (fault.inject's rank clauses); not called by rank 0's workers.
  std::function<void(std::int64_t)> before_step;
  // Supervision of the actors in this process (fault.*): worker actors whose step fails before its push, and
  // (sync) shard actors, are restarted one-for-one, at most max_restarts within restart_window_s; one more
  // stops the run naming the actor and each restart (and checkpoint_dir, when set, to resume from).
  int max_restarts = 0;
  bool shard_snapshots = false;  // ps.shard_snapshots: sync shards keep step-boundary snapshots to restart from
  double restart_window_s = 60.0;
  std::string checkpoint_dir;
  // fault.inject's clauses for this process's actors: "throw worker W at step S" (worker threads of rank 0)
  // and "throw shard S at step N" (the shards' update of step N throws).
  std::vector<supervision::FaultClause> faults;
};

// Test-set metrics of the parameters the shards hold.
struct ClickMetrics {
  std::int64_t samples = 0;
  double log_loss = 0, auc = 0;
  double oracle_log_loss = 0, oracle_auc = 0;  // the hidden model's own probabilities on the same samples
};

struct WideDeepPsResult {
  std::vector<double> losses;       // per step: mean training loss over the W b samples of that step
  double seconds = 0;               // training time (after initialisation, before evaluation)
  double samples_per_s = 0;
  std::int64_t eval_samples = 0;
  double test_log_loss = 0, test_auc = 0;
  double oracle_log_loss = 0, oracle_auc = 0;  // the hidden model's own probabilities on the same samples
  std::size_t state_bytes = 0;      // optimizer state over all shards
  PsCluster::Model model;           // final parameters when keep_model
};

// The PsLayout parameter list of a model: its dense parameters (in order), then its tables.
std::vector<PsParamSpec> ps_params(const WideDeep& model);
// Initial values from the model's seeded initialisation (model must outlive the returned PsInit's use).
PsInit ps_init(const WideDeep& model);

// Throws troupe::Error (kConfig) naming the bad option: ps options (validate), shards, steps, batch size,
// threads or timeout out of range, or bad data/model options.
void validate(const WideDeepPsOptions& options);

// The test metrics of `model` over the first n test samples of `data`, 4096 at a time: rows_for(lookups)
// gives each table's rows for a batch's lookups (a pull from the shards, which may also set the model's
// dense parameters, or a gather from whole tables).
ClickMetrics evaluate_clicks(const ClickLog& data, WideDeep& model, std::int64_t n, int threads,
                             const std::function<std::vector<Tensor>(const std::vector<TableLookup>&)>& rows_for);

// Training step by step (what `troupe train` and Session drive) or at once (train_wide_deep_ps). Rank 0's
// side: the shards, and every worker as a thread — or, given PsLinks, worker 0 and a link server for
// workers 1..W-1, which are processes running train_wide_deep_ps(options, their links).
class WideDeepPsTrainer {
 public:
  // Throws troupe::Error (kConfig) for bad options (validate()). progress(step, loss), when given, is
  // called by worker 0 after each of its steps with the mean loss of its slice.
  explicit WideDeepPsTrainer(WideDeepPsOptions options, std::function<void(std::int64_t, double)> progress = {});
  WideDeepPsTrainer(WideDeepPsOptions options, PsLinks links, std::function<void(std::int64_t, double)> progress = {});
  ~WideDeepPsTrainer();
  WideDeepPsTrainer(const WideDeepPsTrainer&) = delete;
  WideDeepPsTrainer& operator=(const WideDeepPsTrainer&) = delete;

  // Every worker runs steps [steps_done(), end) — in async and ssp mode each at its own pace, as the
  // shards allow — and this returns once all have pushed them. Throws what a worker or shard reports
  // (kInput, kIo), or a dead worker process's failure (kIo, naming it).
  void train(std::int64_t end);
  std::int64_t steps_done() const { return steps_done_; }
  // Per step run by this trainer (from the restored step on, after restore()): the mean training loss
  // over the W b samples of that step, summed in worker order.
  const std::vector<double>& losses() const { return losses_; }
  double train_seconds() const { return seconds_; }
  // The test split's first eval_samples samples (all of them when -1) through worker 0's client, with
  // the parameters as of steps_done().
  ClickMetrics evaluate();
  // The run so far: losses, time, evaluation, optimizer state (and the parameters when keep_model).
  WideDeepPsResult result();
  // Every parameter as the shards hold it now (dense in WideDeep::dense() order, then whole tables).
  PsCluster::Model snapshot();
  // Checkpoints (PsCluster::training_state), between train() calls: every dense parameter and whole
  // table with its optimizer state, by name, after steps_done() steps; and back under this trainer's
  // shard and worker counts, whatever wrote it: training then goes on from state.step (losses() lists
  // the steps run since). troupe::Error (kInput) naming `source` and the tensor when the state does not
  // fit the model. With PsLinks: restore before the first train() — the worker processes start at
  // state.step — and training_state() only in sync mode (kConfig otherwise: a worker process's later
  // pushes reach the shards at any time), waiting until the shards have applied steps_done() steps.
  TrainingState training_state();
  void restore(const TrainingState& state, const std::string& source);
  // Records each worker's pull, forward+backward and push spans (tracks "worker w"; with processes
  // worker 0's only) and each shard's updates ("ps shard s") into `trace` from the next train() on,
  // each train() call one step window.
  void set_trace(TraceRecorder* trace);
  const WideDeep& reference() const { return *reference_; }
  const ClickLog& data() const { return *data_; }
  // Worker processes restarted so far (with PsLinks).
  int restarts() const;
  // Every restart: this process's worker and shard actors ("worker w", "shard s"; under max_restarts), then
  // the worker processes (PsLinkServer::restart_log, "ps worker w").
  std::vector<supervision::Restart> restart_log() const;
  // With PsLinks, after the last step: waits for every worker's goodbye. (Destruction without it breaks
  // the links: a failed run.)
  void finish();

 private:
  // With PsLinks: tells the worker processes to start at steps_done() (once, before the first step).
  void open_links();
  // Worker thread w's steps [first, end) as worker actors: a failure before the step's push is answered by a
  // one-for-one restart (a fresh actor, model and client run the step again and the rest), within the
  // intensity. The failure that ends it, if any.
  std::optional<Error> drive_worker(int w, std::int64_t first, std::int64_t end,
                                    const std::function<void(std::int64_t, double)>& keep);
  // Worker w failed in `step` (`pushed`: after its push began): true when it is to be restarted (recorded).
  bool restart_worker(int w, std::int64_t step, bool pushed, const Error& failure);
  double clock_s() const;
  // fault.inject's "throw worker W at step S" for worker w: fires once, then is gone.
  bool take_worker_fault(int w, std::int64_t step);
  // Hands the cluster its shard supervision (sync, max_restarts > 0): snapshots, faults, restarts.
  void supervise_shards();

  WideDeepPsOptions o_;
  std::function<void(std::int64_t, double)> progress_;
  std::unique_ptr<const ClickLog> data_;
  std::unique_ptr<const WideDeep> reference_;  // initial values and shapes
  std::shared_ptr<const PsLayout> layout_;
  std::unique_ptr<PsCluster> cluster_;
  std::vector<std::unique_ptr<PsClient>> clients_;  // threads: one per worker; links: worker 0's
  std::unique_ptr<PsLinks> links_;
  std::unique_ptr<PsLinkServer> server_;
  bool links_open_ = false;  // the worker processes were told where to start
  std::vector<double> losses_;
  std::int64_t steps_done_ = 0;
  TraceRecorder* trace_ = nullptr;
  std::vector<int> tracks_;  // per worker run here
  double seconds_ = 0;

  mutable std::mutex restart_mu_;  // intensity_, escalated_, worker_faults_: the worker threads' drivers share them
  supervision::RestartIntensity intensity_{0, 60.0};
  std::optional<Error> escalated_;
  std::vector<supervision::FaultClause> worker_faults_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// Throws troupe::Error (kConfig) for bad options (validate(), before anything starts), and whatever a worker
// or shard reports (kInput, kIo) if training fails. progress(step, loss), when given, is called by
// worker 0 after each of its steps with the mean loss of its slice.
WideDeepPsResult train_wide_deep_ps(const WideDeepPsOptions& options,
                                    const std::function<void(std::int64_t, double)>& progress = {});

// The same with the workers as processes (links from ps_processes.h): this process's part. Rank 0
// hosts the shards, runs worker 0, answers the other workers (restarting one that dies, as `links`
// allows), evaluates and returns the result, equal to the threads' one in sync mode. Worker w > 0 trains
// its slices, from where a restarted worker resumes, and returns an empty result.
WideDeepPsResult train_wide_deep_ps(const WideDeepPsOptions& options, PsLinks links,
                                    const std::function<void(std::int64_t, double)>& progress = {});

}  // namespace troupe::ps
