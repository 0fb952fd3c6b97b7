// Owns SubgroupTransport: a view of some ranks of a Transport as a group of their own (rank i of the view is members[i] of the whole), so that any collective can run among them.
//
// Used by the hierarchical allreduce (hierarchical.h) to run the ring among one leader per host. The view
// sends nothing of its own and owns nothing: messages go out on the underlying transport under the
// collective's tags, so a collective on a view and one on the whole group must not interleave on the
// same thread pair with the same tags (callers run them one after the other, as every rank does).
#pragma once

#include <vector>

#include "runtime/comm/transport.h"
#include "runtime/error.h"

namespace troupe::comm {

class SubgroupTransport final : public Transport {
 public:
  // `members`: distinct ranks of `whole`, in the view's rank order; whole.rank() must be one of them.
  SubgroupTransport(Transport& whole, std::vector<int> members) : whole_(whole), members_(std::move(members)) {
    for (std::size_t i = 0; i < members_.size(); ++i) {
      TROUPE_CHECK(members_[i] >= 0 && members_[i] < whole_.size(), "member ", members_[i], " of ", whole_.size());
      if (members_[i] == whole_.rank()) rank_ = static_cast<int>(i);
    }
    TROUPE_CHECK(rank_ >= 0, "rank ", whole_.rank(), " is not a member of its subgroup");
  }

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(members_.size()); }
  void send(int to, std::uint32_t tag, std::span<const std::byte> data) override { whole_.send(member(to), tag, data); }
  void recv(int from, std::uint32_t tag, std::span<std::byte> out) override { whole_.recv(member(from), tag, out); }

 private:
  int member(int r) const {
    TROUPE_CHECK(r >= 0 && r < size(), "rank ", r, " of a subgroup of ", size());
    return members_[static_cast<std::size_t>(r)];
  }

  Transport& whole_;
  std::vector<int> members_;
  int rank_ = -1;
};

}  // namespace troupe::comm
