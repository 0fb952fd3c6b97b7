// Owns TransportReplicaSum: ReplicaSum over a Transport whose ranks are the replicas of one pipeline stage.
//
// The transport is this object's alone (not the gradient exchange's): statistics are summed on the
// stage's thread in the middle of forward and backward, while the stage's gradient buckets may be
// reduced on another thread over the gradient transport (comm::Transport is used by one thread at a time).
// Integer sums give the same bits for any algorithm, so allreduce picks by size (runtime/comm/allreduce.h).
#pragma once

#include <memory>

#include "runtime/comm/transport.h"
#include "runtime/replica_sum.h"

namespace troupe::comm {

class TransportReplicaSum final : public ReplicaSum {
 public:
  explicit TransportReplicaSum(std::unique_ptr<Transport> transport) : transport_(std::move(transport)) {}
  void sum(std::span<ExactSum> values) override;

 private:
  std::unique_ptr<Transport> transport_;
};

}  // namespace troupe::comm
