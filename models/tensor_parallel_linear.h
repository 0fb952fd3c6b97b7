// Owns the two products whose sums tensor parallelism cuts: a row-parallel linear's forward (with g) and a column-parallel linear's backward (with f), in float or, in deterministic mode, exactly.
//
// A row-parallel output is a dot product over all inputs cut into T pieces, one per shard; a
// column-parallel input gradient is one over all outputs, cut the same way. In float each piece is
// rounded on its own and the pieces summed, so the bits depend on T (within about 1e-8 relative). In
// deterministic mode (Backend::deterministic) both are cut into `pieces` fixed pieces of the whole sum,
// whatever T: each piece summed in float in a fixed order, the pieces added as an exact sum, over the
// group as integers, and rounded once (runtime/exact_sum.h). A shard holds whole pieces (every valid
// T divides `pieces`), so every T, T = 1 included, gives the same bits: what makes a tensor-parallel
// run bitwise the single device's. Exact sums cost per piece, not per term. Every other product is
// whole on one shard (a column-parallel output, a weight gradient), so needs nothing.
//
// Sequence parallelism (`sequence_samples` > 0: the activations are that many samples, split along the
// sequence over the group; runtime/comm/tensor_parallel_ops.h): the sum over the group is a
// reduce-scatter instead of an allreduce (scatter forward, gather backward), and `y` / `dx` hold only
// this shard's part of every sample's tokens. Each element is the same sum, added in the same order (in
// float, rank order by the chunk's owner; exactly in deterministic mode), so it has the same bits.
#pragma once

#include "runtime/backend.h"
#include "runtime/comm/tensor_group.h"

namespace troupe {

// y = x @ w^T (+ bias), summed over the group (g): w is this shard's [out, in / T] slice, x its
// [N, in / T] inputs; `bias` is passed by one shard only (added once), undefined on the others.
// `pieces`: how many exact pieces the whole sum (over all T slices) is cut into in deterministic mode.
void row_parallel_forward(Backend& be, comm::TensorGroup group, const Tensor& x, const Tensor& w, const Tensor& bias,
                          const Tensor& y, std::int64_t row_block, int pieces, std::int64_t sequence_samples = 0);

// Backward of a column-parallel linear (w this shard's [out / T, in] slice): dw, dbias accumulated as
// Backend::linear_backward does, and dx (when defined) the input gradient summed over the group (f).
void column_parallel_backward(Backend& be, comm::TensorGroup group, const Tensor& dy, const Tensor& x, const Tensor& w,
                              const Tensor& dx, const Tensor& dw, const Tensor& dbias, std::int64_t row_block, int pieces,
                              std::int64_t sequence_samples = 0);

// Sequence parallelism's gather as a tensor: every token's rows of `local` (this shard's part of
// `samples` samples' sequences, [nl, C]), [nl T, C], in the samples' order.
Tensor gather_sequence(Backend& be, comm::TensorGroup group, const Tensor& local, std::int64_t samples);

}  // namespace troupe
