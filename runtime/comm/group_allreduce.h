// Owns GroupAllreduce: the sum of a data-parallel group's gradient buckets, with the algorithm chosen
// once, when the group is built, from what the group is (its exchange and whether its ranks share
// this process) — callers just sum.
//
//   float buckets      ring (parallel.gradient_exchange = ring)   allreduce_ring over the transport
//                                                                  (its sums through shared memory when
//                                                                  the transport lends a SharedWindow),
//                                                                  or LocalGroup by reference when the
//                                                                  ranks are threads of this process
//                      direct (alltoall)                          reduce-scatter + all-gather, one round each
//   exact-sum buckets  LocalGroup when there is one, else direct: integer sums give the same bits
//   (deterministic)    whatever the algorithm, and direct moves as many bytes as the ring.
//   ring or exact      hierarchical (hierarchical.h) instead of ring or direct when the group's ranks
//                      span several hosts and some host holds several of them (hierarchy_pays): only
//                      one leader per host then sends across hosts.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "runtime/comm/local_group.h"
#include "runtime/comm/transport.h"
#include "runtime/config/choices.h"
#include "runtime/exact_sum.h"

namespace troupe::comm {

class GroupAllreduce {
 public:
  enum class Algo { ring, direct, local, hierarchical };

  // `transport`'s ranks are the group; `local` (may be null) is the same group by reference, for ranks
  // that are threads of this process. `exchange` is ring or alltoall (parameter servers do not reduce).
  // `host_of`: each group rank's host (hierarchical.h host_indices of the Topology's places); empty:
  // all on one host.
  GroupAllreduce(Transport& transport, GradientExchange exchange, std::shared_ptr<LocalGroup> local,
                 std::vector<int> host_of = {});

  // In place, every rank's buffer becomes the sum of all ranks' (bitwise equal on every rank).
  void sum(std::span<float> data);
  void sum(std::span<ExactSum> data);

  // Bytes this rank sends to sum `bytes` of float (or of exact sums) buckets.
  std::size_t bytes_sent(std::size_t bytes, bool exact) const;

  Algo float_algo() const { return float_algo_; }
  Algo exact_algo() const { return exact_algo_; }

 private:
  template <class T>
  void run(Algo algo, std::span<T> data);

  Transport& transport_;
  std::shared_ptr<LocalGroup> local_;
  std::vector<int> host_of_;
  Algo float_algo_, exact_algo_;
};

}  // namespace troupe::comm
