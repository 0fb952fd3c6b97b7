// Owns SubgroupTransport: one group's view of a wider group's transport — a tensor group or a data group among all the rank processes of a job, each member addressed by its rank in the group.
//
// A job whose ranks are processes joins one transport of every rank (one rendezvous, one connection
// per pair of processes); each parallel group is a list of those ranks, and a view maps the group's
// rank g to the world's members[g]. Collectives written against comm::Transport run on a view unchanged.
//
// Tags: a view forwards them as they are. Two views over the same world must not share a pair of ranks
// unless their collectives never run at once with the same tag; a job's tensor and data groups share
// none (two ranks in one tensor group differ only in their tensor coordinate, in one data group only in
// their data coordinate). Errors are the world's, so a dead member is named by its world rank (the
// Topology's rank, as --print-plan lists it).
#pragma once

#include <vector>

#include "runtime/comm/transport.h"

namespace troupe::comm {

class SubgroupTransport final : public Transport {
 public:
  // `members`: world ranks in group-rank order, distinct, in [0, world.size()), one of them
  // world.rank() (TROUPE_CHECK). `world` outlives the view.
  SubgroupTransport(Transport& world, std::vector<int> members);

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(members_.size()); }
  void send(int to, std::uint32_t tag, std::span<const std::byte> data) override;
  void recv(int from, std::uint32_t tag, std::span<std::byte> out) override;
  void send_lent(int to, std::uint32_t tag, std::span<const std::byte> data) override;
  void release_lent() noexcept override;

  // The world rank of group rank g.
  int world_rank(int g) const;

 private:
  Transport& world_;
  std::vector<int> members_;
  int rank_ = 0;
};

}  // namespace troupe::comm
