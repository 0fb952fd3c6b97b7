// Owns DataParallelTrainer: parallel.data replicas of a (possibly pipelined) model, trained in lockstep — in one process, replicas as threads over the in-process transport — plus the pieces a multi-process replica uses, and its side of re-forming the group when a peer process dies.
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
//
// Batch norm (the cnn): by default each replica normalises by its own share's statistics and keeps its
// own running statistics, as PyTorch DDP; replica 0's are the ones saved (weights files, checkpoints),
// as DDP saves rank 0's. With model.sync_batchnorm the statistics are the whole batch's, summed over a
// stage's replicas in forward and backward (runtime/replica_sum.h), so every replica holds the same
// running statistics and, in deterministic mode with one micro-batch, the run is the single device's.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "actors/actor_pipeline.h"
#include "actors/process_recovery.h"
#include "actors/state/gradient_sync.h"
#include "actors/state/pipeline_driver.h"
#include "net/inproc/inproc_transport.h"
#include "runtime/comm/reformable_transport.h"
#include "runtime/comm/transport.h"

namespace troupe {

// The pipeline options of parallel.* for replica `replica` (of parallel.data).
PipelineOptions pipeline_options(const RunConfig& config, int replica);
// The GradientSync options of comm.* and parallel.*.
GradientSyncOptions gradient_sync_options(const RunConfig& config);
// Attaches a GradientSync to every stage of `driver`, stage s talking over transports[s].
void attach_gradient_syncs(PipelineDriver& driver, std::vector<std::unique_ptr<comm::Transport>> transports,
                           const GradientSyncOptions& options);

class ActorSystem;

class DataParallelTrainer {
 public:
  // All parallel.data replicas in this process, as threads over in-process groups. Throws
  // troupe::Error(kConfig) for what cannot run (see PipelineDriver).
  // With `actors`, every stage of every replica is a CAF actor (ActorPipeline, one thread each) that
  // reduces its gradients itself; without, each replica's stages run on one thread (PipelineDriver).
  // `topology`: the run's (runner.h: plan_run), for the supervisors' reports; without it, derived.
  explicit DataParallelTrainer(const RunConfig& config, bool actors = true, const plan::Topology* topology = nullptr);
  // Only replica `rank` of parallel.data, in this process; stage s reaches its peers (the same stage
  // of the other replicas, in other processes) over transports[s]. The multi-process (tcp) form.
  // stats_transports[s]: stage s's group for synchronised batch-norm statistics (model.sync_batchnorm
  // with parallel.data > 1: one per stage; otherwise none).
  // `recovery` (with every transport a comm::ReformableTransport): a peer process that dies or hangs does
  // not end the run — this process abandons the step, the groups re-form (actors/process_recovery.h) and
  // the step every process agreed on is run (step_process in the .cpp).
  DataParallelTrainer(const RunConfig& config, int rank, std::vector<std::unique_ptr<comm::Transport>> transports,
                      bool actors = true, const plan::Topology* topology = nullptr,
                      std::vector<std::unique_ptr<comm::Transport>> stats_transports = {},
                      std::unique_ptr<ProcessRecovery> recovery = nullptr);
  ~DataParallelTrainer();

  // One step on every replica at once; the stats are replica 0's (the loss is the whole batch's).
  // A replica that fails is marked dead in every group, so its peers stop at once instead of waiting
  // out comm.timeout_s; the failing replica's own error is rethrown. With fault.max_restarts > 0 and the
  // replicas as actors of this process, a stage or optimizer-state actor that dies on one replica is
  // restarted by its replica and the step is re-run on every replica (step_group in the .cpp):
  // bitwise the uninterrupted step in deterministic mode.
  StepStats train_step(std::int64_t step);
  EvalStats evaluate();
  void load_weights(const std::string& path);
  void save_weights(const std::string& path) const;
  void set_trace(TraceRecorder* trace);

  // Replicas held in this process (parallel.data, or 1 for the multi-process form).
  int replicas() const { return static_cast<int>(drivers_.size()); }
  Dataset& dataset() { return drivers_[0]->dataset(); }
  CpuBackend& backend() { return drivers_[0]->backend(); }
  std::vector<Param*> params_in_order() const { return drivers_[0]->params_in_order(); }
  // Replica r's stages (touch them between steps only).
  PipelineDriver& replica(int r) { return *drivers_.at(static_cast<std::size_t>(r)); }
  // Replica r's actors (when run by actors).
  ActorPipeline& actor_replica(int r) { return *actor_pipelines_.at(static_cast<std::size_t>(r)); }
  // Every replica's restarts so far, replica by replica (when run by actors); in the multi-process form
  // with recovery, rank 0's restarts of rank processes too.
  std::vector<supervision::Restart> restarts() const;
  // The step the last train_step ran: the one asked for, except in a process whose peers re-formed the
  // group around another (a survivor that stood a step ahead of or behind rank 0, which decides).
  std::int64_t last_step_run() const { return last_step_run_; }
  // Multi-process form with recovery, in a restarted process: joins the re-forming group, takes the
  // state of rank 0 and returns the step to run next.
  std::int64_t rejoin();
  // Multi-process form with recovery, after this process's last step: waits until every process has run
  // every step, re-forming the group should one die meanwhile. Returns config.train.steps, or — in a process
  // whose group re-formed around an earlier step (a peer died in the last step) — the step to go on from.
  std::int64_t finish_together();
  ProcessRecovery* recovery() { return recovery_.get(); }
  // Bytes replica 0 sent in the last step, over all its stages.
  CommStats last_step_comm() const;
  // Optimizer-state bytes held by replica r (ZeRO-1: about 1/D of the replicated figure).
  std::size_t optimizer_state_bytes(int r) const;

 private:
  RunConfig config_;
  std::vector<std::unique_ptr<net::InprocWorld>> worlds_;  // one group per stage (messages and by reference)
  // Synchronised batch norm (model.sync_batchnorm): one more group per stage for the statistics, summed
  // on the stages' threads while the gradient groups may be busy on the exchange threads.
  std::vector<std::unique_ptr<net::InprocWorld>> stats_worlds_;
  void add_replica(const RunConfig& per, int rank, std::vector<std::unique_ptr<comm::Transport>> transports, bool actors,
                   const plan::Topology* topology);

  // The replicas' supervisor: aborts, abandons and re-runs an interrupted step on all of them.
  void step_group(caf::scoped_actor& self, std::int64_t step, std::vector<StepStats>& stats,
                  const std::function<void(int, Error)>& failed);
  // The multi-process form's recovery: a step abandoned because a peer process failed, re-run after the
  // groups re-form.
  StepStats step_process(caf::scoped_actor& self, std::int64_t step);
  TrainingState local_state(std::int64_t step) const;
  // The re-formed groups in place of the old ones, and rank 0's state when it was sent; the agreed step.
  std::int64_t install(ReformedGroups& groups);
  std::unique_ptr<ProcessRecovery> recovery_;
  std::vector<comm::ReformableTransport*> reformable_;  // owned by the stages' GradientSyncs
  std::int64_t last_step_run_ = -1;
  bool group_restarts_ = false;      // every replica is an actor pipeline of this process
  std::uint64_t group_round_ = 0;    // abandon-and-re-run rounds so far (every step's)

  std::shared_ptr<ActorSystem> actor_system_;                     // every replica's stage actors, one system
  std::vector<std::unique_ptr<ActorPipeline>> actor_pipelines_;  // when run by actors
  std::vector<std::unique_ptr<PipelineDriver>> own_drivers_;      // when run in-thread
  std::vector<PipelineDriver*> drivers_;                          // replica i's stages, either way
};

}  // namespace troupe
