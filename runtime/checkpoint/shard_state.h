// Owns the tensor-shard side of a TrainingState: a shard's optimizer state gathered whole over its tensor group, and a whole state cut to a shard's slices.
//
// A TrainingState holds whole tensors by name whatever the layout (training_state.h). A tensor shard
// holds slices of its split parameters and of their optimizer state (AdamW's moments are shaped like
// their parameter, so split the same way): to write a state it gathers them (a collective: every shard
// of the group calls, with the same parameters in the same order, and gets the whole), and to restore
// one it keeps its slices (no collective).
#pragma once

#include <vector>

#include "runtime/checkpoint/training_state.h"
#include "runtime/comm/tensor_group.h"

namespace troupe {

// The entries of `mine` for `params` (in that order; a parameter without one is skipped), each state
// tensor gathered whole over `group` as its parameter is split; the step count is mine's.
OptimizerState gather_shard_optimizer_state(comm::TensorGroup group, const OptimizerState& mine,
                                            const std::vector<Param*>& params);

// `whole` with every tensor of a split parameter among `params` (its value and its optimizer state) cut
// to the slice that parameter holds. A tensor whose shape is not the whole one stays as it is, for
// scatter_params to name it.
TrainingState shard_of_state(const TrainingState& whole, const std::vector<Param*>& params);

}  // namespace troupe
