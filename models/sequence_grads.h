// Owns the sum over the tensor group of the gradients sequence parallelism leaves partial: the replicated LayerNorm parameters, each shard having seen only its part of the sequence.
//
// Under sequence parallelism (models/gpt_layers.h) a LayerNorm runs on this shard's tokens only, so
// its weight and bias gradients (Param::sequence_partial) hold this shard's tokens' share. Once per step,
// after the last backward and before anything reads the gradients (data-parallel averaging aside:
// a sum commutes with it), every shard calls this together. In deterministic mode the shards' exact
// accumulators (Backend::exact_grad) are added as integers, before they are flushed, so the total is
// the integer one device forms from every token and rounds to the same bits; otherwise the float
// gradients are summed (rank order, so every shard holds the same bits). One allreduce per step of the
// partial gradients packed together: 2 C floats per LayerNorm (2 per block and ln_f; 16-byte sums in
// deterministic mode) — small beside the activations' collectives.
#pragma once

#include <vector>

#include "runtime/backend.h"
#include "runtime/comm/tensor_group.h"
#include "runtime/param.h"

namespace troupe {

// Sums the gradients of the Param::sequence_partial ones of `params` over `group` (a no-op when
// none is, or the group is one shard).
void sum_sequence_partial_grads(Backend& be, comm::TensorGroup group, const std::vector<Param*>& params);

}  // namespace troupe
