// Owns the parameter-server side of a TrainingState: the shards' states gathered whole by parameter name,
// and a whole state cut into one shard's share, for any shard count.
//
// A TrainingState holds every parameter whole, by name (runtime/checkpoint/training_state.h). On
// parameter servers a dense parameter lives whole on one shard and an embedding table is split by rows
// (row r on shard r % S, PsLayout); their optimizer state is split the same way: the dense optimizer's
// entries per parameter, and each table slice's lazily made state tensors ([local rows, dim], zeros for
// rows never touched) with the table's step count. Gathering reassembles every table, its state tensors
// and its step count (the same on every shard: PsShard counts a step for every slice, touched or not);
// cutting picks shard s's rows back out. Because the cut depends only on the layout that reads the
// state, a state gathered under S shards restores under any other S'.
//
// Whole state, by name:
//   params              dense parameters (PsLayout dense order), then each table [rows, dim]
//   optimizer.params    a dense parameter: its optimizer entry; a table: step = its step count, tensors =
//                       its state tensors whole (absent while the table has never been updated)
//   optimizer.step      the dense optimizer's step() calls (sync: the steps done; async, ssp: the pushes)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "actors/state/ps/ps_layout.h"
#include "actors/state/ps/ps_shard.h"
#include "runtime/checkpoint/training_state.h"

namespace troupe::ps {

// The whole state of `shards` (one per shard of `layout`, in shard order) after `steps_done` steps.
TrainingState gather_ps_state(const PsLayout& layout, const std::vector<PsShardState>& shards, std::int64_t steps_done);

// Shard `shard`'s share of `whole` under `layout`. Checks first that `whole` holds every parameter of
// the layout, in its shape, and no other, with state tensors shaped like their parameter: otherwise
// troupe::Error (kInput) naming `source` and the tensor.
PsShardState cut_ps_state(const TrainingState& whole, const PsLayout& layout, int shard, const std::string& source);

}  // namespace troupe::ps
