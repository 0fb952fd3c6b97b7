// Owns StepCoordinator: the one plain state machine that coordinates a pipeline step, driven alike by
// PipelineDriver (every stage in the calling thread, the reference) and ActorPipeline (a stage actor
// each, over messages). It holds no thread and sends nothing: its caller moves the values it names.
//
// A step, in four phases (each phase waits for every stage):
//   1. begin      every stage gets this replica's share of the batch and runs its program up to its
//                 optimizer step; ready(stage, losses, tied_grad) as each arrives there. The stage
//                 holding the model's last layer brings the per-row losses and, when the model ties a
//                 weight to a user on another stage, that user's gradient share.
//   2. finish     every stage finishes backward with tied_grad() (its owner folds it in first) and
//                 reports its per-parameter sums of squares: finished(stage, sumsq).
//   3. update     update(): the global norm, clip coefficient and learning rate every stage applies
//                 (exactly the single device's); applied(stage, value) with the tied weight's new value
//                 from the stage that owns it. Here train.on_nonfinite is decided for every layout: a
//                 non-finite sum of squares (there is one exactly when a gradient element is NaN or Inf)
//                 or loss throws ErrorKind::kNumeric naming the step and the first parameter (stop), or
//                 marks the update skipped (skip). The sums and the losses (gathered from every replica)
//                 are the same on every data-parallel replica, so every replica decides alike.
//   4. tie        tied_weight() goes to the stage holding the replica (last_stage()), if defined.
// stats() then gives the step's loss (per-row losses added in micro-batch order), norm, lr and rate.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "actors/state/pipeline_driver.h"

namespace troupe {

class StepCoordinator {
 public:
  // `params_in_order`: every parameter in layer order (virtual stage k's chunk, in order of k), asked
  // for only to name a non-finite gradient; when empty it is named by its virtual stage and index.
  StepCoordinator(const RunConfig& config, const PipelineOptions& options, const pipeline::Layout& layout,
                  std::function<std::vector<Param*>()> params_in_order = {});

  // What every stage begins step `step` with.
  struct Start {
    Batch batch;  // this replica's share
    int microbatches = 1;
    float loss_scale = 1.0f;  // 1 / the whole batch's loss terms (all replicas)
    std::int64_t rows_per_sample = 1;
  };
  Start begin(std::int64_t step, Dataset& dataset);
  // The step begun last (-1 before the first).
  std::int64_t step() const { return step_; }

  void ready(int stage, std::vector<Tensor> losses, Tensor tied_grad);
  bool all_ready() const { return ready_ == stages_; }
  // Whether stage `stage` reported ready in this step (a stage that restarts mid-step before it did may
  // redo the step alone; one that did would report twice).
  bool has_ready(int stage) const { return ready_from_.at(static_cast<std::size_t>(stage)) != 0; }
  const Tensor& tied_grad() const { return tied_grad_; }

  void finished(int stage, std::vector<std::vector<double>> sumsq);
  bool all_finished() const { return finished_ == stages_; }
  // Phase 3's update; only when all_finished().
  const StepUpdate& update();

  void applied(int stage, Tensor tied_weight);
  bool all_applied() const { return applied_ == stages_; }
  const Tensor& tied_weight() const { return tied_weight_; }
  // The stage holding the model's last layer (its losses, and the tied weight's replica).
  int last_stage() const { return last_; }

  // The step's statistics, `seconds` after begin().
  StepStats stats(double seconds) const;

 private:
  const RunConfig& config_;
  PipelineOptions options_;
  pipeline::Layout layout_;
  int stages_, last_;
  std::int64_t step_ = -1;
  int ready_ = 0, finished_ = 0, applied_ = 0;
  std::function<std::vector<Param*>()> params_in_order_;
  std::vector<char> ready_from_;  // per stage, this step
  std::vector<Tensor> losses_;
  Tensor tied_grad_, tied_weight_;
  std::vector<std::vector<std::vector<double>>> sumsq_;
  StepUpdate update_;
  bool updated_ = false;
};

}  // namespace troupe
