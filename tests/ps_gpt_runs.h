// Owns the small GPT the parameter-server restart tests train on two workers and two shards: one such
// run's losses, final weights and restarts, the config error its settings make, and the escalation that
// stops it when a child fails past fault.max_restarts = 1.
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

// The error load_config gives for ps_gpt(more), or "no error".
inline std::string ps_gpt_config_error(std::vector<std::string> more) {
  try {
    load_config(std::nullopt, ps_gpt(std::move(more)));
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// How a run stops when a child of the parameter-server supervisor fails again past its intensity.
struct PsEscalation {
  std::string error;                // the supervisor's escalation
  std::size_t restarts_logged = 0;  // the restarts before it
};

// Trains ps_gpt with fault.max_restarts = 1 and fault.inject = `faults`, whose first fault (step 1) is
// restarted and whose second (step 2) is past the intensity: steps 0 and 1 must train, step 2 must throw.
inline PsEscalation escalate_ps_gpt(const std::string& faults) {
  ps::PsTrainer t(load_config(std::nullopt, ps_gpt({"fault.max_restarts=1", "fault.inject=" + faults})));
  t.train_step(0);
  t.train_step(1);  // restarted
  PsEscalation e;
  try {
    t.train_step(2);
    FAIL("the second fault is past the intensity");
  } catch (const Error& err) {
    e.error = err.what();
  }
  e.restarts_logged = t.restart_log().size();
  return e;
}

// Checks that `error` is the supervisor's escalation when CHILD ("worker 1", "shard 1"), restarted after
// "throw CHILD at step 1", throws again in step 2 past fault.max_restarts = 1 (fault.restart_window_s = 60).
inline void check_second_throw_escalated(const std::string& error, const std::string& child) {
  CHECK_THAT(error, Catch::Contains("died in step 2: fault.inject: throw " + child + " at step 2") &&
                        Catch::Contains("the supervisor gives up: that is more than fault.max_restarts = 1 restarts "
                                        "within fault.restart_window_s = 60 s; the 1 restart before:\n  " +
                                        child + " in step 1: fault.inject: throw " + child + " at step 1"));
}

}  // namespace troupe
