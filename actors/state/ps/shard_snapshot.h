// Owns ShardSnapshot: a parameter-server shard's step-boundary copy (its parameters and optimizer state after
// its last complete update), and a fresh shard revived from it.
//
// In sync mode a shard's state changes only when a step's update completes (every worker's push summed,
// and with clipping the coefficient applied), so the copy taken after each update is the state of a step
// boundary. Beside it the cluster logs the pushes the shard accepted since (ps_actor.h): a shard that dies
// is revived from the copy (version v: v updates applied, every worker counted as having pushed v steps)
// and given those pushes again, and its clients ask again what failed. Async and ssp shards apply each push
// as it comes; they are not revived (ps_actor.h).
#pragma once

#include <cstdint>
#include <memory>

#include "actors/state/ps/ps_layout.h"
#include "actors/state/ps/ps_shard.h"

namespace troupe::ps {

struct ShardSnapshot {
  PsShardState state;
  std::int64_t version = 0;  // updates applied when it was taken
};

// A deep copy of `shard` now; a step boundary (no clip coefficient awaited) is the caller's to choose.
ShardSnapshot take_snapshot(const PsShard& shard);

// A deep copy of `snapshot` (a shard may die again before it takes its next one).
ShardSnapshot copy_snapshot(const ShardSnapshot& snapshot);

// Shard `shard` of `layout` as `snapshot` left it: parameters, optimizer state and version (sync mode).
std::shared_ptr<PsShard> revive_shard(std::shared_ptr<const PsLayout> layout, int shard, const PsOptions& options,
                                      const ShardSnapshot& snapshot);

}  // namespace troupe::ps
