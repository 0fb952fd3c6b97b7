// Owns the one-for-one supervision of a sync parameter-server cluster's shard actors under a trainer's restart
// intensity: whether the shards are supervised at all, and what a shard's death does (a restart counted and
// announced, or the escalation that ends the run). PsTrainer and WideDeepPsTrainer share it.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "actors/ps/ps_actor.h"
#include "runtime/error.h"
#include "runtime/supervision/fault_plan.h"
#include "runtime/supervision/restart_intensity.h"
#include "runtime/supervision/supervisor.h"

namespace troupe::ps {

// The trainer's restart book, which its worker supervision shares; the pointers outlive the cluster.
struct ShardRestartBook {
  std::mutex* mu;                           // guards intensity, escalated and supervisor (the worker drivers share them)
  supervision::RestartIntensity* intensity;  // fault.max_restarts within fault.restart_window_s
  std::optional<Error>* escalated;           // once set, the error that ends the run: every later death throws it
  std::function<double()> clock_s;           // the trainer's clock, which the intensity's times are on
  std::function<std::string(const std::string& child)> place;  // "shard s" as the escalation names it
  std::string checkpoint_dir;                // where the escalation says to resume from
  supervision::Supervisor* supervisor = nullptr;  // when set, told of each death and restart
};

// The supervision a cluster's shards get, or nullopt when a dead shard just ends the run. Only sync shards
// restart (async and ssp would lose the updates since their snapshot), and only when they keep snapshots:
// when ps.shard_snapshots asks for them and restarts are allowed, or a fault.inject clause among `faults`
// rehearses a shard's failure.
std::optional<PsShardSupervision> shard_supervision(const std::vector<supervision::FaultClause>& faults, PsMode mode,
                                                    bool shard_snapshots, int max_restarts, ShardRestartBook book);

}  // namespace troupe::ps
