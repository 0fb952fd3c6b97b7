// Owns DataParallelTrainer: parallel.data replicas of a (possibly pipelined) model, trained in lockstep — in one process, replicas as threads over the in-process transport — plus the pieces a multi-process replica uses.
//
// Topology (dp x pp): replica r is a PipelineDriver over its contiguous share of every batch; stage s
// of every replica forms one data-parallel group with its own Transport (ranks = replicas), and a
// GradientSync on each stage reduces that stage's gradients within the group as backward produces
// them. Every replica then applies the same update (or, with ZeRO-1, its shard of it), so replicas stay
// bitwise identical; replica 0 answers evaluation and weight files.
//
// Equal to single-device training: each replica scales its loss by the whole batch's loss terms, so the
// sum over replicas is the single-device gradient; losses are gathered and added in sample order. In
// deterministic mode gradients travel as exact sums (runtime/exact_sum.h) and the run is bitwise the
// single-device one; otherwise the float sums differ in rounding only (tests: within 1e-5 relative).
#pragma once

#include <memory>
#include <vector>

#include "actors/gradient_sync.h"
#include "actors/pipeline_driver.h"
#include "net/inproc/inproc_transport.h"
#include "runtime/comm/transport.h"

namespace troupe {

// The pipeline options of parallel.* for replica `replica` (of parallel.data).
PipelineOptions pipeline_options(const RunConfig& config, int replica);
// The GradientSync options of comm.* and parallel.*.
GradientSyncOptions gradient_sync_options(const RunConfig& config);
// Attaches a GradientSync to every stage of `driver`, stage s talking over transports[s].
void attach_gradient_syncs(PipelineDriver& driver, std::vector<std::unique_ptr<comm::Transport>> transports,
                           const GradientSyncOptions& options);

class DataParallelTrainer {
 public:
  // Throws troupe::Error(kConfig) for what cannot run (see PipelineDriver).
  explicit DataParallelTrainer(const RunConfig& config);
  ~DataParallelTrainer();

  // One step on every replica at once; the stats are replica 0's (the loss is the whole batch's).
  // A replica that fails is marked dead in every group, so its peers stop at once instead of waiting
  // out comm.timeout_s; the failing replica's own error is rethrown.
  StepStats train_step(std::int64_t step);
  EvalStats evaluate();
  void load_weights(const std::string& path);
  void save_weights(const std::string& path) const;
  void set_trace(TraceRecorder* trace);

  int replicas() const { return static_cast<int>(replicas_.size()); }
  Dataset& dataset() { return replicas_[0]->dataset(); }
  CpuBackend& backend() { return replicas_[0]->backend(); }
  std::vector<Param*> params_in_order() const { return replicas_[0]->params_in_order(); }
  PipelineDriver& replica(int r) { return *replicas_.at(static_cast<std::size_t>(r)); }
  // Bytes replica 0 sent in the last step, over all its stages.
  CommStats last_step_comm() const;
  // Optimizer-state bytes held by replica r (ZeRO-1: about 1/D of the replicated figure).
  std::size_t optimizer_state_bytes(int r) const;

 private:
  RunConfig config_;
  std::vector<std::unique_ptr<net::InprocWorld>> worlds_;  // one group per stage
  std::vector<std::unique_ptr<PipelineDriver>> replicas_;
};

}  // namespace troupe
