// Owns train_wide_deep_ps: the click-log recommender (Wide & Deep or DeepFM, WideDeepOptions::kind) trained
// by W worker threads against a cluster of parameter-server shard actors (the recommender example's engine,
// shared with its tests). Both kinds have the same tables (field embeddings, then the wide/first-order table).
//
// Parameters: WideDeep's dense parameters (dense indices 0.. in WideDeep::dense() order) and its tables
// (one embedding table per field, then the wide table), sharded by PsLayout. Worker w, step t:
//   its slice [w b, (w + 1) b) of the global batch ClickLog::train_batch(t, W b)  (b = batch_size)
//   -> lookup the rows it touches -> pull them and every dense parameter (the mode decides when)
//   -> forward/backward on its own CpuBackend -> push dense gradients and sparse rows.
// Loss scaling: sync sums the W pushes, so each worker scales by 1 / (W b): the update is the one a
// single process makes on the whole global batch. async and ssp apply each push as a step of its own,
// so each worker scales by 1 / b (its own mean).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "actors/ps/ps_actor.h"
#include "actors/ps/ps_link_server.h"
#include "models/wide_deep.h"
#include "runtime/data/click_log.h"

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
