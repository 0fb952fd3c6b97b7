// Owns ReplicaSum: what a layer calls, inside its forward or backward, to add exact per-channel sums over the data-parallel replicas that share a batch (synchronised batch norm).
//
// Synchronised batch norm (model.sync_batchnorm, as torch.nn.SyncBatchNorm) normalises each replica's
// share of the batch by the whole batch's mean and variance, and its backward by the whole batch's
// sums of dy and dy·x̂. The sums travel as exact fixed-point values (runtime/exact_sum.h), so the total
// is the same integer whatever the order and grouping of the replicas: a data-parallel run is bitwise
// the single-device one, which forms the same per-sample contributions and sums them exactly too.
//
// Every replica of the group calls sum() the same number of times, in the same order, with buffers of
// the same length (they run the same program over equal shares of the batch).
#pragma once

#include <span>

#include "runtime/exact_sum.h"

namespace troupe {

class ReplicaSum {
 public:
  virtual ~ReplicaSum() = default;
  // In place: `values` becomes the elementwise sum of every replica's values, the same on all of them.
  // A peer that is gone or silent throws troupe::Error(kIo) naming it (see comm::Transport).
  virtual void sum(std::span<ExactSum> values) = 0;
};

}  // namespace troupe
