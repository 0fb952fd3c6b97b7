// TransportReplicaSum: one allreduce of exact sums per call.
#include "runtime/comm/transport_replica_sum.h"

#include "runtime/comm/allreduce.h"

namespace troupe::comm {

void TransportReplicaSum::sum(std::span<ExactSum> values) {
  if (transport_->size() > 1) allreduce<ExactSum>(*transport_, values);
}

}  // namespace troupe::comm
