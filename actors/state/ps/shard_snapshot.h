// Owns ShardSnapshot: a parameter-server shard's step-boundary copy (its parameters and optimizer state after
// its last complete update), a fresh shard revived from it, and what a worker re-sends to that shard.
//
// In sync mode a shard's state changes only when a step's update completes (every worker's push summed,
// and with clipping the coefficient applied), so the copy taken after each update is the state of a step
// boundary. A shard that dies loses that step's buffered pushes and whatever its update had changed; the
// revived one stands where the copy was taken (version v: v updates applied, every worker counted as having
// pushed v steps), and each worker whose last push was for step v or later pushes it again. The other shards
// keep their state: they never see the re-sent pushes. Async and ssp shards apply each push as it comes, so
// a copy would lose the pushes since; they are not revived (ps_actor.h).
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

// Must a worker whose last push was for step `last_push` (-1: none yet) push it again to a shard revived at
// `version`? Only when the revived shard has not applied that step.
inline bool must_push_again(std::int64_t last_push, std::int64_t version) { return last_push >= version; }

}  // namespace troupe::ps
