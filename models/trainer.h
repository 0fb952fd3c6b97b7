// Owns Trainer: the single-device reference training loop every parallel strategy must reproduce.
//
// One step, llm.c style: batch(step) -> zero_grad -> forward -> backward (loss = mean over all loss
// terms of the batch) -> fold tied gradients -> clip (optional) -> optimizer step at lr(step).
#pragma once

#include <memory>
#include <string>

#include "models/model.h"
#include "models/step_stats.h"
#include "runtime/config/run_config.h"
#include "runtime/checkpoint/training_state.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/data/dataset.h"
#include "runtime/optim/optimizer.h"
#include "runtime/trace/trace.h"

namespace troupe {

// Weight files for any list of parameters (a model, or a pipeline's stages in layer order): names and
// shapes must match exactly; everything is checked before anything changes. A saved file records the
// model configuration and troupe's version in its metadata (runtime/config/weights_config.h).
void load_weights_into(const std::vector<Param*>& params, const std::string& path);
void save_weights_from(const std::vector<Param*>& params, const std::string& path, const RunConfig& config);

// Mean loss (and arg-max accuracy) of the held-out data through `models` run in order (one model, or
// a pipeline's chunks in layer order): train.eval_batches batches, or the whole test set for the mlp.
EvalStats evaluate_models(Backend& be, const Dataset& dataset, const RunConfig& config,
                          const std::vector<Model*>& models);

// Builds the dataset named by the config (text corpus for gpt, Fashion-MNIST for mlp and cnn).
std::unique_ptr<Dataset> make_dataset(const RunConfig& config);

class Trainer {
 public:
  // group: this trainer is one tensor-parallel shard of the model (every shard of the group steps
  // together, on the same batch); a group of one is the single-device reference.
  // replicas: the data-parallel group of this shard across parallel.data replicas (one per tensor rank:
  // the same shard of every replica), null for one replica. Replica r takes rows r·B/D … (r+1)·B/D of
  // each step's batch; gradients (and the loss) are averaged over the group before clipping and the
  // update, summed in rank order, so every replica keeps the same weights.
  explicit Trainer(const RunConfig& config, comm::TensorGroup group = {}, comm::Transport* replicas = nullptr);
  ~Trainer();

  StepStats train_step(std::int64_t step);
  // Records forward, backward and optimizer spans of every step on track "device".
  void set_trace(TraceRecorder* trace) {
    trace_ = trace;
    track_ = trace->track("device");
  }
  // Mean loss over train.eval_batches validation batches (all of the test set for the mlp).
  EvalStats evaluate();

  // Weight files (safetensors, f32; bf16 files are widened): parameters and buffers. Names and shapes
  // must match exactly. They hold whole tensors: tensor shards gather to save (all shards call, shard 0
  // writes) and keep their slice when loading, so one file serves every parallel.tensor.
  void load_weights(const std::string& path);
  void save_weights(const std::string& path) const;

  // Checkpoints: a copy of parameters, buffers and optimizer state after `steps_done` steps; and back
  // (checked first: troupe::Error(kInput) naming `source` when it does not fit this model).
  TrainingState training_state(std::int64_t steps_done) const;
  void restore_training_state(const TrainingState& state, const std::string& source);

  // --- restarts (fault.max_restarts; the tensor-shard actor's supervisor, actors/tensor_parallel.h) ---
  // Keeps a deep copy of the parameters, buffers and optimizer state as step `step` begins, replacing
  // the last one. (Nothing else moves: a batch and the learning rate are functions of the step.)
  void keep_boundary(std::int64_t step);
  // Abandons the step's partial work (gradients and their exact sums) and, when the kept copy is step
  // `step`'s, restores it: the step can run again as if for the first time.
  void rewind(std::int64_t step);
  // The step whose boundary the kept copy is (-1 when none).
  std::int64_t boundary_step() const { return boundary_ ? boundary_step_ : -1; }
  // This shard's own state as it stands (its slices of split parameters, whole replicated ones, buffers,
  // optimizer state; no collective): what a peer process keeps, or hands to a restarted shard process
  // of the same tensor index (actors/tensor_parallel_processes.h).
  TrainingState shard_state(std::int64_t steps_done) const;
  // The same, sharing this shard's live tensors instead of copying them (troupe::Tensor copies are
  // references): for serialising at once, before the next step or restore changes them.
  TrainingState shard_state_view(std::int64_t steps_done) const;
  // Back, from such a state (names and shapes checked: troupe::Error(kInput) naming `source`); it
  // becomes the kept copy of its step's boundary too.
  void restore_shard_state(const TrainingState& mine, const std::string& source);
  // fault.inject ("throw shard T"): the next step throws between its forward and its backward, where
  // its tensor peers wait for it in a collective.
  void inject_fault() { fault_ = true; }

  Model& model() { return *model_; }
  Dataset& dataset() { return *dataset_; }
  CpuBackend& backend() { return *backend_; }
  Optimizer& optimizer() { return *optimizer_; }
  const RunConfig& config() const { return config_; }

 private:
  MicroBatch micro_batch(const Batch& batch) const;
  // The data-parallel average (replicas_): gradients in place; returns the loss sum's average.
  double average_over_replicas(double loss_sum);
  // Deterministic mode's data parallelism: the replicas' exact gradient sums added (in place); returns
  // the sum of every row's loss over all replicas, in row order.
  double exact_sum_over_replicas(const Tensor& losses);

  RunConfig config_;
  comm::TensorGroup group_;
  comm::Transport* replicas_ = nullptr;
  std::unique_ptr<CpuBackend> backend_;
  std::unique_ptr<Dataset> dataset_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Optimizer> optimizer_;
  TraceRecorder* trace_ = nullptr;
  int track_ = 0;
  struct Boundary {
    std::vector<Tensor> state;  // params().state(), in that order
    OptimizerState optimizer;
  };
  std::unique_ptr<Boundary> boundary_;
  std::int64_t boundary_step_ = -1;
  bool fault_ = false;
};

}  // namespace troupe
