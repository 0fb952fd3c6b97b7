// Owns the recommender's Job: `troupe train` and Session with model.kind = deepfm — the run's
// configuration mapped onto WideDeepPsTrainer (actors/ps/wide_deep_ps.h), whose engine the recommender
// example and its tests share, and stepped as every Job is (actors/runner.h dispatches here).
//
// Configuration -> the parameter-server run:
//   parallel.data = W workers, each training train.batch_size / W samples of every step's batch;
//   ps.shards, ps.mode, ps.staleness: the shards (dense parameters and table rows balanced over them);
//   comm.transport = inproc: workers are threads; tcp (or shm): workers 1..W-1 are processes linked to
//     this one (ps.max_restarts of them restarted when they die), with the same losses in sync mode;
//   optim.*, train.lr_schedule / warmup_steps / min_lr: the shards' optimizer and each push's rate;
//   train.grad_clip: sync, one clipping round over the summed gradient; async/ssp, each worker its own;
//   train.seed: the click log's and the initialisation's seed; train.threads / W compute threads each;
//   model.max_cardinality, embed_dim, deep_hidden, hashed_rows: the tables and the MLP;
//   data.test_samples: what each evaluation scores (test AUC and log-loss).
// Configuration errors (runtime/config/config_loader.cpp) refuse what does not fit DeepFM: another
// gradient exchange, pipelines, micro-batches, tensor parallelism, CUDA, bf16, data.path.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "actors/ps/ps_processes.h"
#include "actors/ps/wide_deep_ps.h"
#include <functional>

#include "actors/runner.h"
#include "runtime/config/run_config.h"

namespace troupe {

// The parameter-server run `config` (model.kind = deepfm, validated) describes.
ps::WideDeepPsOptions recommender_options(const RunConfig& config);

// Rank 0's job: the shards and every worker as threads, or worker 0 beside worker processes started
// as `processes` says (when the topology has processes).
// before_step(step), when given, runs as rank 0 begins each step (fault.inject's rank clauses).
std::unique_ptr<Job> launch_recommender(const RunConfig& config, bool worker_processes,
                                        const ps::PsProcessOptions& processes,
                                        std::function<void(std::int64_t)> before_step = {});

// troupe eval of a deepfm weights file (its config adopted from the file): the test metrics of those
// parameters on the held-out click log, computed in this process from the whole tables. Throws
// troupe::Error (kInput) naming a tensor the file lacks or holds in another shape.
EvalStats evaluate_recommender_weights(const RunConfig& config, const std::string& path);

// A worker process (rank >= 1): trains its slices of every step from where it stands, then returns.
// before_step(step), when given, runs as the worker begins each of its steps (fault.inject's rank clauses).
void run_recommender_rank(const RunConfig& config, int rank, const ps::PsProcessOptions& processes,
                          std::function<void(std::int64_t)> before_step = {});

}  // namespace troupe
