// Owns StageWorker: one pipeline stage as a plain state machine (its model chunks, its program cursor,
// its inbox), which a stage actor drives and tests drive directly, without CAF.
//
// A stage holds v model chunks; chunk c is virtual stage k = c*p + s and owns layers
// [boundaries[k], boundaries[k+1]). advance() runs the stage's program (pipeline::Program) until an
// instruction cannot run yet — a receive whose message has not arrived — or the program reaches its
// OptimizerStep. Sends are returned as Outgoing messages for the caller to deliver; in one process a
// Tensor travels by reference (no copy). Order of arrival does not matter: messages wait in the
// inbox, keyed by (kind, micro-batch, chunk), until the program asks for them.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "actors/state/gradient_sync.h"
#include "models/model.h"
#include "runtime/data/dataset.h"
#include "runtime/optim/optimizer.h"
#include "runtime/schedule/instr.h"
#include "runtime/trace/trace.h"

namespace troupe {

struct StageMessage {
  // credit: the receiver consumed one activation of this link, so the sender may send one more.
  enum class Kind { activation, grad, credit };
  Kind kind = Kind::activation;
  int mb = 0;
  int chunk = 0;  // the receiver's chunk
  Tensor tensor;
  // The replica's attempt at the step this message belongs to (replica_actor.h): a step re-run after a
  // restart has a new one, and messages of the abandoned attempt are dropped on arrival.
  std::uint64_t attempt = 0;
};

struct Outgoing {
  int to_stage = 0;
  StageMessage message;
};

// A stage's whole trainable state, deep-copied: what a supervisor needs to restart the stage elsewhere.
struct StageSnapshot {
  int stage = 0;
  std::vector<std::pair<std::string, Tensor>> params;  // values of parameters, then buffers, chunk by chunk
  OptimizerState optimizer;                            // every state tensor and step count
  Tensor tied_replica;                                 // this stage's replica of the tied weight, when it has one
};

class StageWorker {
 public:
  // sent: it produced messages and stopped so they can go out at once (call again);
  // blocked: waiting for a message; at_step: standing at the OptimizerStep; killed: it reached the
  // instruction inject_kill() named (fault.inject's mid-step kill) — its actor is to end as a crash ends it.
  enum class Status { sent, blocked, at_step, killed };

  // specs: the whole model's layers; boundaries: p*v + 1 entries, virtual stage k owns
  // [boundaries[k], boundaries[k+1]).
  StageWorker(int stage, pipeline::Layout layout, const std::vector<LayerSpec>& specs,
              const std::vector<std::size_t>& boundaries, pipeline::Program program, Backend& backend,
              const OptimConfig& optim);

  int stage() const { return stage_; }
  // Starts a training step on `batch`, cut into `microbatches` equal micro-batches of whole samples.
  void begin_step(const Batch& batch, int microbatches, float loss_scale, std::int64_t row_block);
  void deliver(StageMessage message);
  // Runs instructions until one sends (so the message leaves before the next compute), until blocked on
  // a receive, or until the OptimizerStep.
  Status advance(std::vector<Outgoing>& out);
  // The instruction the cursor stands at, as text ("RECV_F3"), for error grids.
  std::size_t cursor() const { return cursor_; }
  const pipeline::Program& program() const { return program_; }

  // --- at the OptimizerStep ---------------------------------------------------------------------
  // Per-token losses of each micro-batch, in micro-batch order (only the stage holding the last layer).
  const std::vector<Tensor>& losses() const { return losses_; }
  // Whether this stage holds the model's last layer (the loss).
  bool holds_loss() const { return layout_.stage_of(layout_.num_virtual() - 1) == stage_; }
  // A tied weight's user's gradient share when the weight's owner lives on another stage (else undefined).
  Tensor tied_grad() const;
  // Adds a user's tied gradient share into the owner's gradient (the stage that owns the tied weight,
  // as the model declares it: LayerSpec::tied_weight).
  void fold_tied_grad(const Tensor& grad);
  // Phase 2 of a step (step_coordinator.h): folds `tied_grad` in when this stage owns the tied weight,
  // then finish_backward().
  std::vector<std::vector<double>> finish_step(const Tensor& tied_grad);
  bool owns_tied_weight() const;
  // Ends the backward pass: folds tied gradients held on this stage, then returns per-parameter
  // gradient sums of squares chunk by chunk (call after fold_tied_grad on the owner). By the time
  // advance() reports at_step, gradients are final: reduced over replicas and, in deterministic mode,
  // flushed from their exact sums.
  std::vector<std::vector<double>> finish_backward();
  // Clip scale, optimizer step, gradients zeroed, cursor rewound; returns the tied weight's new value when owned.
  // = update_params, then finish_update. The stage actors split it: the stage's optimizer-state actor
  // runs update_params (the optimizer state is its to touch during a step), the stage actor finish_update.
  // skip: no update_params (train.on_nonfinite = skip), weights and optimizer state stay as they are.
  Tensor apply_step(double clip_coefficient, double lr, bool skip = false);
  // The optimizer's share: gradients scaled by the clip coefficient, the optimizer step on the
  // parameters this stage updates (its own under ZeRO-1).
  void update_params(double clip_coefficient, double lr);
  // The stage's share after the update: updated parameters all-gathered (ZeRO-1), gradients zeroed,
  // cursor rewound; returns the tied weight's new value when owned.
  Tensor finish_update();
  // Refreshes this stage's replica of the tied weight after the owner's step.
  void set_tied_weight(const Tensor& value);

  // Most micro-batches in flight at once on this stage (forward done, backward not yet) since
  // construction: the activations it holds, and a bound on the messages it can have sent ahead to a
  // slower neighbour. The schedule sets it, however slow the neighbours are: 1F1B stops a stage until
  // gradients come back (at most p - s), GPipe lets it run all m forwards.
  std::size_t peak_in_flight() const { return peak_in_flight_; }
  // Forwards and backwards this stage has run since construction (what a restart made it redo included).
  std::size_t computed() const { return computed_; }
  // Test hook: every Forward and Backward takes `delay` in all, its real compute included, or its
  // compute's time when that is longer (a deliberately slow stage; the pipeline benchmark's cost model).
  void set_compute_delay(std::chrono::microseconds delay) { compute_delay_ = delay; }
  // Flow control: at most `credits` activations sent to the next stage and not yet consumed by its
  // forward, per link; a send beyond that waits for a credit. 0: as many as the schedule sends.
  void set_credits(int credits) { credit_limit_ = credits; }
  // Most activations this stage had sent and not yet seen consumed, on any link (with credits on).
  int peak_unconsumed_sends() const { return peak_unconsumed_; }
  // Fault injection (failure-path tests, fault.inject), each firing once: the instruction at `index`
  // of the program throws (SIZE_MAX: none); the first gradient turns NaN when the backward ends; the
  // optimizer update throws halfway through the stage's parameters (some updated, some not).
  void inject_fault(std::size_t index) { fault_at_ = index; }
  // Fault injection: advance() stops with Status::killed, once, when the cursor reaches `index`.
  void inject_kill(std::size_t index) { kill_at_ = index; }
  void inject_nan() { nan_armed_ = true; }
  void inject_update_fault() { update_fault_armed_ = true; }

  // --- restarts (fault.max_restarts; step_boundary.cpp) -------------------------------------------
  // Keeps a deep copy of the stage's state (snapshot()) as step `step` begins, replacing the last one.
  void keep_boundary(std::int64_t step);
  // Abandons the step in progress — inbox, activations, gradients (their exact sums too), credits,
  // cursor — and, when the kept copy is step `step`'s, restores it: the stage stands where step `step`
  // began, whatever phase it had reached (an applied update is undone). A stage that never began step
  // `step` already stands there.
  void rewind(std::int64_t step);
  // Keeping work over a neighbour's restart (step_boundary.cpp): with `on`, every activation and gradient
  // this stage sends during a step is kept (a copy) until the step ends, so that a neighbour that restarts
  // mid-step from its boundary can be sent them again (resend_to) while this stage keeps its own progress;
  // and a message this stage already received in the step (the restarted neighbour sends everything
  // again) is dropped on arrival. Both are forgotten when the step ends or is rewound.
  void keep_sent(bool on);
  // Every message this stage sent to `stage` in the step in progress, in the order sent.
  std::vector<Outgoing> resend_to(int stage) const;
  // Whether this stage can redo the step in progress alone, from its boundary, while its neighbours keep
  // theirs: nothing of the step has reached a peer it cannot send again — no collective of the step has
  // begun on it (no gradient bucket handed to its replicas, no tensor-parallel or batch-norm group), and
  // no flow-control credits are counted (a redone send would need credits its neighbour never returns).
  bool can_redo_alone() const;
  // Bytes the kept copy holds (0 when none).
  std::size_t boundary_bytes() const;
  // The step whose boundary the kept copy is (-1 when none).
  std::int64_t boundary_step() const { return boundary_ ? boundary_step_ : -1; }

  // Data parallelism: this stage's replicas reduce gradients through `sync` (bound to this stage's
  // chunks here). Buckets start as the last micro-batch's backward passes their layers; the
  // OptimizerStep waits for all of them; ZeRO-1 updates only this replica's shard.
  void attach_gradient_sync(std::unique_ptr<GradientSync> sync);
  GradientSync* gradient_sync() { return sync_.get(); }
  // Synchronised batch norm (model.sync_batchnorm): every training micro-batch sums its batch-norm
  // statistics over this stage's replicas through `sum` (a group of its own, apart from the gradients').
  void attach_replica_sum(std::unique_ptr<ReplicaSum> sum) { replica_sum_ = std::move(sum); }
  // Tensor parallelism: this stage is one shard of `group` (its chunks were built as that shard, see
  // make_layer_specs); its sums of squares are then the whole gradients' (runtime/optim/
  // shard_sum_squares.h: gathered in exact_order, else allreduced), so every shard clips alike.
  void set_tensor_group(comm::TensorGroup group, bool exact_order) {
    tensor_ = group;
    exact_order_ = exact_order;
  }
  comm::TensorGroup tensor_group() const { return tensor_; }

  // Records this stage's compute, sends, waits and optimizer step on `track` of `trace`.
  void set_trace(TraceRecorder* trace, int track) {
    trace_ = trace;
    track_ = track;
    if (sync_) sync_->set_trace(trace, track);
  }

  // Between steps only. restore() checks the snapshot fits this stage (names, shapes) before
  // changing anything, and throws troupe::Error (kInput) naming the mismatch.
  StageSnapshot snapshot() const;
  void restore(const StageSnapshot& snapshot);

  std::vector<Param*> params() const;
  // The optimizer's state (ZeRO-1: only the parameters this replica owns); between steps only.
  OptimizerState& optimizer_state() { return optimizer_->state(); }
  const OptimizerState& optimizer_state() const { return optimizer_->state(); }
  // Bytes of optimizer state this stage holds (ZeRO-1: only its replica's shard has any).
  std::size_t optimizer_state_bytes() const { return optimizer_->state_bytes(); }
  Model& chunk(int c) { return *chunks_.at(c); }
  const Model& chunk(int c) const { return *chunks_.at(c); }
  int num_chunks() const { return static_cast<int>(chunks_.size()); }

 private:
  using Key = std::tuple<int, int, int>;  // kind, mb, chunk
  bool run(const pipeline::Instr& instr, std::vector<Outgoing>& out);
  // The tied weight's replica this stage holds (its user's TiedUse), or none.
  TiedUse tied_replica() const;
  // The tied weight's owning parameter when it lives on this stage, or null.
  Param* tied_owner() const;
  // Reduces gradients over replicas and flushes exact sums, once per step.
  void finalize_grads();
  int vstage(int chunk) const { return layout_.virtual_stage(stage_, chunk); }

  int stage_;
  pipeline::Layout layout_;
  pipeline::Program program_;
  Backend& backend_;
  std::string tied_weight_;  // the parameter the model ties (LayerSpec::tied_weight); empty: none
  double update_begin_us_ = 0.0;  // when update_params began (the trace's "optimizer step" span)
  std::vector<std::unique_ptr<Model>> chunks_;
  std::unique_ptr<Optimizer> optimizer_;

  std::vector<MicroBatch> microbatches_;
  std::vector<std::vector<std::vector<LayerCtx>>> ctxs_;  // [mb][chunk][layer]
  std::map<Key, Tensor> inbox_;    // arrived, not yet received
  std::map<Key, Tensor> ready_;    // received, not yet consumed by compute
  std::map<Key, Tensor> outputs_;  // produced, not yet sent
  std::vector<Tensor> losses_;
  std::size_t cursor_ = 0;
  std::size_t in_flight_ = 0;
  std::size_t peak_in_flight_ = 0;
  std::size_t computed_ = 0;
  std::chrono::microseconds compute_delay_{0};
  std::size_t fault_at_ = SIZE_MAX;
  std::size_t kill_at_ = SIZE_MAX;
  bool keep_sent_ = false;
  std::vector<Outgoing> sent_;  // this step's activations and gradients sent, copies (keep_sent)
  std::set<Key> received_;      // this step's activations and gradients arrived (keep_sent)
  bool nan_armed_ = false;
  bool update_fault_armed_ = false;
  std::unique_ptr<StageSnapshot> boundary_;  // kept by keep_boundary()
  std::unique_ptr<ReplicaSum> replica_sum_;  // synchronised batch norm's group; null: per-replica statistics
  std::int64_t boundary_step_ = -1;
  int credit_limit_ = 0;
  std::map<int, int> credits_used_;  // sender chunk -> activations sent and not yet consumed
  int peak_unconsumed_ = 0;
  TraceRecorder* trace_ = nullptr;
  int track_ = 0;
  double blocked_since_ = -1.0;
  std::unique_ptr<GradientSync> sync_;
  comm::TensorGroup tensor_;  // a group of one unless this stage is a tensor shard
  bool exact_order_ = false;
  std::vector<int> backwards_done_;  // per chunk, this step
  bool grads_final_ = false;         // reduced and flushed at this step's OptimizerStep
};

}  // namespace troupe
