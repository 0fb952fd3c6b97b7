// Owns shard_grad_sum_squares: each parameter's whole-gradient sum of squares, as one device forms it, from one tensor shard's slices.
//
// Gradient clipping adds per-parameter sums of squares in the single device's parameter order
// (clip_grad.h). A tensor shard holds a replicated parameter's whole gradient but only its slice of a
// split one, so the whole sum needs the group: in deterministic mode (exact_order) each split gradient
// is gathered whole and summed as the single device sums it (the same bits); otherwise the slices'
// sums are added over the group in one allreduce of doubles (rank order; within rounding of the whole).
// Every shard of the group calls it together, with its parameters in the same order, and gets the
// same numbers.
#pragma once

#include <vector>

#include "runtime/comm/tensor_group.h"
#include "runtime/param.h"

namespace troupe {

// grad_sum_squares(params) for a group of one.
std::vector<double> shard_grad_sum_squares(comm::TensorGroup group, const std::vector<Param*>& params, bool exact_order);

}  // namespace troupe
