// Owns PsShard: one parameter-server shard as a plain state machine — its slice of the parameters, their
// optimizer state, and the sync / async / SSP rules for pushes and pulls. The shard actor (ps_actor.h)
// only maps messages onto it; tests drive it directly.
//
// A worker's step t is: pull (parameters for step t) -> compute gradients -> push (gradients of step t).
// Steps count from 0, and each worker pushes its steps in order, none skipped.
//   sync   A step's update is applied once all W workers have pushed it: gradients are summed in
//          worker-rank order (worker 0's copied, then 1's added, ...), so the result does not depend on
//          arrival order, then one optimizer step. A pull for step t is answered once t updates are
//          applied (version() >= t): every worker computes step t on the same parameters.
//   async  Each push is applied at once, as its own optimizer step (Hogwild-style; the shard's mailbox
//          serialises updates, so a shard is never updated by two pushes at a time). Pulls are answered
//          at once with whatever has been applied.
//   ssp    Stale synchronous parallel with staleness s (Ho et al., 2013): pushes are applied at once as
//          in async; a pull for step t is answered only when every worker has pushed at least t - s
//          steps (the slowest worker is at most s steps behind). s = 0 is a barrier each step without
//          averaging.
// A pull that may not be answered yet is queued with the caller's ticket and released by the push that
// admits it (push() returns the released pulls, oldest first).
//
// Dense gradients of a push cover the shard's dense parameters (PsLayout::dense_of_shard order), or are
// empty (nothing for them). Sparse gradients are, per table, the rows the worker touched on this shard:
// global row ids, strictly increasing, each owned by this shard, with rows [ids, dim]. Only those rows
// change (SparseTable: lazy update). Every input is checked before anything changes; a bad one throws
// troupe::Error (kInput) naming the shard, the worker, the step and what is wrong.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "actors/state/ps/ps_layout.h"
#include "actors/state/ps/sparse_table.h"
#include "runtime/config/run_config.h"
#include "runtime/exact_sum.h"
#include "runtime/optim/optimizer.h"
#include "runtime/param.h"

namespace troupe::ps {

// The ps.mode named `mode` ("sync" | "async" | "ssp", as a person writes it); throws troupe::Error
// (kConfig) naming ps.mode and the choices otherwise. (RunConfig holds the parsed troupe::PsMode.)
PsMode parse_mode(const std::string& mode);

struct PsOptions {
  PsMode mode = PsMode::sync;
  int staleness = 0;   // ssp only
  int workers = 1;
  OptimConfig optim;   // every shard runs this optimizer on its slice; optim.lr unless a push names another
  // sync only: clip the summed gradient by its global 2-norm (train.grad_clip; 0 = off). The norm spans
  // every shard, so a complete step waits for a norm round (norm() from every shard, then clip()).
  bool clip = false;
};
// Throws troupe::Error (kConfig) for workers < 1, staleness < 0, staleness > 0 outside ssp, or clip
// outside sync.
void validate(const PsOptions& options);

// Rows of one table, by global row id.
struct SparseRows {
  std::vector<std::int64_t> ids;  // strictly increasing
  Tensor rows;                    // f32 [ids.size(), dim]
};

// A dense gradient as exact fixed-point sums (train.deterministic; runtime/exact_sum.h): `buffers`
// accumulators of the parameter's size back to back — buffer 0 the parameter's own, the others gradients
// folded into it (a tied weight's second use). The shard adds each buffer over the workers as integers,
// rounds each once and adds them in buffer order: exactly what one device computes (flush, then fold).
struct ExactGrad {
  std::vector<ExactSum> sums;
  int buffers = 1;
};

struct PsPush {
  int worker = 0;
  std::int64_t step = 0;
  double lr = -1.0;                 // learning rate of this update (a schedule's); < 0: optim.lr. sync: equal for every worker
  std::vector<Tensor> dense;        // this shard's dense gradients, or empty
  std::vector<ExactGrad> exact;     // instead of `dense` (sync only): the same gradients as exact sums
  std::vector<SparseRows> tables;   // one per table (possibly no ids), or empty for none at all
};

struct PsPullRequest {
  int worker = 0;
  std::int64_t step = 0;                       // the step the worker is about to compute
  bool dense = true;                           // send the shard's dense parameters
  std::vector<std::vector<std::int64_t>> rows; // per table: global row ids on this shard (increasing), or empty
};

struct PsPullReply {
  int shard = 0;
  std::int64_t version = 0;     // updates applied on this shard when answered
  std::vector<Tensor> dense;    // copies, PsLayout::dense_of_shard order (empty unless asked)
  std::vector<Tensor> tables;   // per requested table: [ids, dim] copies
};

// Initial parameter values. Both are pure functions of the name (and row), so a shard initialises its
// slice without the others and the values do not depend on the shard count.
struct PsInit {
  std::function<Tensor(const std::string& name)> dense;  // the full initial tensor
  // out[i] = initial row rows[i] of the table (out is [rows.size(), dim]).
  std::function<void(const std::string& table, std::span<const std::int64_t> rows, const Tensor& out)> table_rows;
};

// One shard's whole state at a step boundary (a checkpoint's share; ps_shard_state.h cuts and gathers
// it by name): dense values (dense_of_shard order) and their optimizer's state with its global step
// count, then per table its slice with lazily made state and step count.
struct PsShardState {
  std::vector<Tensor> dense;
  OptimizerState dense_optimizer;
  std::vector<SparseTable::Saved> tables;
};

class PsShard {
 public:
  PsShard(std::shared_ptr<const PsLayout> layout, int shard, PsOptions options, const PsInit& init);

  struct Released {
    std::uint64_t ticket;
    PsPullReply reply;
  };
  // Applies (or, in sync mode, buffers) a push; returns the queued pulls it admits.
  std::vector<Released> push(PsPush push);
  // Answers a pull now, or queues it under `ticket` and returns nothing.
  std::optional<PsPullReply> pull(const PsPullRequest& request, std::uint64_t ticket);

  // Clipping round (options.clip, sync): once every worker pushed `step`, the summed gradients' sums of
  // squares — one per dense parameter (dense_of_shard order), then one per table. Answered now, or queued
  // under `ticket` until the step's last push (norms_released() then lists it).
  std::optional<std::vector<double>> norm(std::int64_t step, std::uint64_t ticket);
  std::vector<std::uint64_t> norms_released();
  // The sums of squares norm() answers (valid while a step waits for its coefficient).
  std::vector<double> current_sum_squares() const;
  // Scales the summed gradients of `step` by `coefficient` (when < 1, as clip_grad_norm), applies the
  // update and returns the pulls it admits.
  std::vector<Released> clip(std::int64_t step, double coefficient);

  // Would a pull by `worker` for `step` be answered now?
  bool admits(int worker, std::int64_t step) const;
  int shard() const { return shard_; }
  std::int64_t version() const { return version_; }                 // optimizer updates applied
  std::int64_t pushed(int worker) const { return pushed_.at(static_cast<std::size_t>(worker)); }
  std::size_t queued_pulls() const { return queue_.size(); }
  const PsLayout& layout() const { return *layout_; }

  // The shard's current values: dense parameter d (one this shard owns), table t's slice [local rows, dim].
  const Tensor& dense_value(int d) const;
  const SparseTable& table(int t) const { return tables_.at(static_cast<std::size_t>(t)); }
  // Optimizer state bytes held by this shard (dense and tables).
  std::size_t state_bytes() const;

  // Checkpoints: a deep copy of the shard's parameters and optimizer state as of version() updates
  // (pushes buffered for the next sync step and queued pulls are not part of it); and back, at a step
  // boundary (no push buffered, no pull queued), as if every worker had pushed `steps_done` steps (sync:
  // `steps_done` updates applied; async and ssp: the dense optimizer's step count, one per push).
  // Throws troupe::Error (kInput) naming the shard and the tensor when `state` does not fit this
  // shard's slice, and (kInput) when a step is in flight; nothing changes then.
  PsShardState save() const;
  void restore(PsShardState state, std::int64_t steps_done);
  // A shard revived from a snapshot and its log of pushes (shard_snapshot.h): from now on a push for a step
  // this worker has pushed already is acknowledged and changes nothing (the worker asks again what its
  // shard's predecessor had taken), where it would otherwise be refused as out of order.
  void accept_repeated_pushes() { repeats_ok_ = true; }

 private:
  void check_push(const PsPush& push) const;
  void check_pull(const PsPullRequest& request) const;
  std::string where(int worker, std::int64_t step, const char* what) const;
  // Sums the gradients of `pushes` (worker order; absent ones skipped) into dense_[].grad and table_sums_.
  void sum(const std::vector<const PsPush*>& pushes);
  // One optimizer update at `lr` from the summed gradients, scaled first by `coefficient` when < 1.
  void apply(double lr, double coefficient = 1.0);
  PsPullReply answer(const PsPullRequest& request) const;
  std::vector<Released> release();

  std::shared_ptr<const PsLayout> layout_;
  int shard_;
  PsOptions options_;
  double lr_;
  std::vector<Param> dense_;                 // dense_of_shard order
  std::vector<SparseTable> tables_;          // per table: this shard's rows
  std::unique_ptr<Optimizer> dense_optimizer_, table_optimizer_;
  std::int64_t version_ = 0;
  std::vector<std::int64_t> pushed_;         // per worker: pushes received
  std::vector<std::optional<PsPush>> pending_;  // sync: this step's pushes, by worker
  std::deque<std::pair<std::uint64_t, PsPullRequest>> queue_;
  // Summed table gradients of the step being applied: (global ids, rows) per table (ids empty: none).
  std::vector<std::pair<std::vector<std::int64_t>, Tensor>> table_sums_;
  // Per table: did the step's pushes carry a gradient for it (maybe none of this shard's rows)?
  std::vector<bool> table_pushed_;
  bool summed_ = false;             // clip: the step is summed and waits for its coefficient
  double summed_lr_ = 0;
  std::vector<std::uint64_t> norm_waiting_, norm_ready_;
  bool repeats_ok_ = false;
};

}  // namespace troupe::ps
