// Owns PipelineDriver: one training step of a pipeline of StageWorkers, run in the calling thread —
// the coordination logic that stage actors follow, and the reference they are tested against.
//
// A step: begin_step on every stage; advance stages in order, delivering their messages, until every
// stage stands at its OptimizerStep (a full round with no progress is a deadlock: reported with the
// step x stage grid); sum the last stage's per-token losses in micro-batch order; ship the LM head's
// tied gradient to the stage owning wte; add per-parameter gradient norms in global parameter order
// (exactly the single-device clip_grad_norm); apply the optimizer step on every stage; refresh the
// head's replica of wte. Losses and weights equal the single-device Trainer's (bitwise with
// train.deterministic).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "actors/state/stage_worker.h"
#include "models/trainer.h"
#include "runtime/plan/partition.h"
#include "runtime/plan/topology.h"

namespace troupe {

struct PipelineOptions {
  int stages = 1;
  int virtual_stages = 1;
  int microbatches = 1;
  ScheduleKind schedule = ScheduleKind::one_f_one_b;
  std::string boundaries;          // "" = balanced by estimated cost; else "0,3,6" (p*v entries)
  // Stages run at the same time (one actor thread each): each gets its own backend with
  // train.threads / stages threads. Off: one backend shared by stages run one after another.
  bool concurrent_stages = false;
  int credits = 0;                 // parallel.credits: flow-control window per link, 0 = none
  // Data parallelism: this pipeline is replica `replica` of `replicas`; it trains on its contiguous
  // share of every batch (samples [replica, replica + 1) * batch / replicas) and scales its loss by the
  // whole batch, so gradients summed over replicas (GradientSync, attached per stage) are the batch's.
  int replica = 0;
  int replicas = 1;
  // Every replica is an actor pipeline of this process, stepped by one DataParallelTrainer, which
  // re-runs an interrupted step on all of them (replica_actor.h). Off: a replica whose peers live in
  // other processes, which cannot be re-run together yet.
  bool group_restarts = false;
  // Its index among the pipelines that re-run a step together, as its replica actor answers (done_atom,
  // quiet_atom, ...): -1 for `replica` (data parallelism); d * T + t for tensor rank t of replica d.
  int member = -1;
  // Tensor parallelism (parallel.tensor = T): stage s of this pipeline is one shard of tensor_groups[s]
  // (the same stage of the T pipelines of one replica); empty: whole layers. Its chunks are built as
  // that shard (make_layer_specs), so every collective inside a layer runs over the stage's group, and
  // the T pipelines of a replica must step, evaluate and save together (actors/tensor_pipelines.h).
  std::vector<comm::TensorGroup> tensor_groups;
};

// Replica `replica`'s contiguous share of `batch` (the batch itself for one replica).
Batch replica_share(const Batch& batch, int replica, int replicas);
// Per-token losses of the whole batch, in sample order: the last stage's own, or — with data
// parallelism — every replica's, gathered over the last stage's GradientSync.
std::vector<Tensor> replicas_losses(StageWorker& last);

// The pure arithmetic of a pipeline step, shared by PipelineDriver and the stage actors' coordinator.
// Mean of the per-token losses of all micro-batches, added in micro-batch order (as one device adds
// them in row order); *rows gets their count.
double mean_loss(const std::vector<Tensor>& microbatch_losses, std::int64_t* rows);
// Global gradient 2-norm from per-stage, per-chunk sums of squares, added in layer order.
double global_grad_norm(const pipeline::Layout& layout, const std::vector<std::vector<std::vector<double>>>& sumsq);
// What every stage applies at the end of step `step`: the clip coefficient (1 when clipping is off)
// and the learning rate; grad_norm is the global norm (0 when clipping is off, as on one device).
struct StepUpdate {
  double grad_norm = 0.0, clip = 1.0, lr = 0.0;
  // train.on_nonfinite = skip and the step's loss or gradients are not finite: every stage leaves its
  // weights and optimizer state as they are; `nonfinite` says what (runtime/nonfinite.h).
  bool skip = false;
  std::string nonfinite;
};
StepUpdate plan_update(const RunConfig& config, const pipeline::Layout& layout,
                       const std::vector<std::vector<std::vector<double>>>& sumsq, std::int64_t step);

class PipelineDriver {
 public:
  // Throws troupe::Error (kConfig) for combinations that cannot run (micro-batches not dividing the
  // batch, more virtual stages than layers, bad boundaries).
  PipelineDriver(const RunConfig& config, const PipelineOptions& options);

  StepStats train_step(std::int64_t step);
  EvalStats evaluate();
  // Every parameter of every stage, in layer order (the single-device model's order).
  std::vector<Param*> params_in_order() const;
  // What a weights file holds, as one device's model lists it: params_in_order(), then every buffer
  // (batch-norm running statistics) in layer order.
  std::vector<Param*> weights_in_order() const;
  // Then refreshes the LM head's replica of wte. Files hold whole tensors: a tensor shard keeps its slice.
  void load_weights(const std::string& path);
  // Checkpoints (runtime/checkpoint/training_state.h), between steps. Parameters and buffers of every
  // stage, whole, in layer order; each stage's optimizer state is gathered into `whole` (first: this is
  // the first holder gathered, whose step count the whole takes). A tensor shard gathers its slices over
  // its stages' groups (the T pipelines of a replica call together) and restores by slicing.
  void gather_params_into(TrainingState& state) const;
  void gather_optimizer_state_into(OptimizerState& whole, bool first) const;
  // Scatters `state` into the stages: every parameter and buffer, and to each stage the optimizer
  // state of the parameters it updates (ZeRO-1: its GradientSync's shard). Checked first.
  void restore_training_state(const TrainingState& state, const std::string& source);
  // Whole tensors: a tensor shard's split parameters are gathered over its stage's group (the T
  // pipelines of a replica call together; tensor rank 0 writes the file).
  void save_weights(const std::string& path) const;
  CpuBackend& backend() { return *backend_; }
  Dataset& dataset() { return *dataset_; }
  const plan::Partition& partition() const { return partition_; }
  std::string describe_partition() const;
  StageWorker& stage(int s) { return *stages_.at(s); }
  const StageWorker& stage(int s) const { return *stages_.at(s); }
  int num_stages() const { return static_cast<int>(stages_.size()); }
  const pipeline::Schedule& schedule() const { return schedule_; }
  const pipeline::Layout& layout() const { return layout_; }
  const RunConfig& config() const { return config_; }
  const PipelineOptions& options() const { return options_; }

 private:
  RunConfig config_;
  PipelineOptions options_;
  pipeline::Layout layout_;
  std::unique_ptr<CpuBackend> backend_;
  std::unique_ptr<Dataset> dataset_;
  std::vector<LayerSpec> specs_;
  plan::Partition partition_;
  pipeline::Schedule schedule_;
  std::vector<std::unique_ptr<CpuBackend>> stage_backends_;
  std::vector<std::unique_ptr<StageWorker>> stages_;

  // Tensor parallelism: the group of the stage holding each parameter and buffer.
  std::map<const Param*, comm::TensorGroup> tensor_group_of_params() const;
};

}  // namespace troupe
