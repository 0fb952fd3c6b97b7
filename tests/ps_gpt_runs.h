// Owns the small GPT the parameter-server restart tests train on two workers and two shards, and one such
// run's losses, final weights and restarts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "actors/ps/ps_trainer.h"
#include "runtime/config/config_loader.h"
#include "runtime/supervision/restart_intensity.h"
#include "training_runs.h"

namespace troupe {

// The small GPT's settings over parameter servers, then `more`. train.grad_clip stays on (1.0): a shard's
// update happens in the clipping round, after every push, and worker 0's clipping round waits for every
// worker's push, so a failed worker must be restarted while worker 0 waits, not after it.
inline std::vector<std::string> ps_gpt(std::vector<std::string> more) {
  std::vector<std::string> sets = {"model.n_layer=2",        "model.n_embd=32",     "model.n_head=2",
                                   "model.block_size=16",    "train.batch_size=8", "train.threads=2",
                                   "train.deterministic=true", "train.steps=5",    "parallel.gradient_exchange=ps",
                                   "parallel.data=2",        "ps.shards=2"};
  sets.insert(sets.end(), more.begin(), more.end());
  return sets;
}

struct PsRun {
  TrainingRun run;
  std::vector<supervision::Restart> restarts;
};

// Trains every step of the run these settings make, step by step as the job does.
inline PsRun run_ps(const std::vector<std::string>& sets) {
  const RunConfig config = load_config(std::nullopt, sets);
  ps::PsTrainer t(config);
  PsRun r;
  for (std::int64_t s = 0; s < config.train.steps; ++s) r.run.losses.push_back(t.train_step(s).loss);
  t.evaluate();  // pulls the shards' parameters into worker 0's model
  for (Param* p : t.params_in_order()) r.run.weights[p->name] = p->value.to_vector();
  r.restarts = t.restart_log();
  return r;
}

}  // namespace troupe
