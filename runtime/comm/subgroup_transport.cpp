// SubgroupTransport: group ranks mapped to world ranks, every message passed through.
#include "runtime/comm/subgroup_transport.h"

#include <algorithm>

#include "runtime/error.h"

namespace troupe::comm {

SubgroupTransport::SubgroupTransport(Transport& world, std::vector<int> members)
    : world_(world), members_(std::move(members)) {
  TROUPE_CHECK(!members_.empty(), "a group of no ranks");
  std::vector<int> sorted = members_;
  std::sort(sorted.begin(), sorted.end());
  TROUPE_CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(), "a rank twice in one group");
  TROUPE_CHECK(sorted.front() >= 0 && sorted.back() < world_.size(), "group ranks ", sorted.front(), "..",
               sorted.back(), " outside a world of ", world_.size());
  const auto self = std::find(members_.begin(), members_.end(), world_.rank());
  TROUPE_CHECK(self != members_.end(), "world rank ", world_.rank(), " is not a member of its group");
  rank_ = static_cast<int>(self - members_.begin());
}

int SubgroupTransport::world_rank(int g) const {
  TROUPE_CHECK(g >= 0 && g < size(), "group rank ", g, " of ", size());
  return members_[static_cast<std::size_t>(g)];
}

void SubgroupTransport::send(int to, std::uint32_t tag, std::span<const std::byte> data) {
  world_.send(world_rank(to), tag, data);
}

void SubgroupTransport::recv(int from, std::uint32_t tag, std::span<std::byte> out) {
  world_.recv(world_rank(from), tag, out);
}

void SubgroupTransport::send_lent(int to, std::uint32_t tag, std::span<const std::byte> data) {
  world_.send_lent(world_rank(to), tag, data);
}

void SubgroupTransport::release_lent() noexcept { world_.release_lent(); }

}  // namespace troupe::comm
