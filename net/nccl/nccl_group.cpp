// choose_collective_backend: NCCL for groups of distinct GPUs, the CPU ring otherwise, with the reason.
#include "net/nccl/nccl_group.h"

#include <map>
#include <utility>

#include <fmt/format.h>

namespace troupe::nccl {

bool nccl_built() {
#ifdef TROUPE_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

BackendChoice choose_collective_backend(const std::vector<GroupMember>& members, bool built) {
  if (members.size() < 2) return {false, "a group of one rank needs no collective"};
  std::map<std::pair<std::string, int>, std::size_t> seen;  // (host, GPU) -> first rank on it
  for (std::size_t r = 0; r < members.size(); ++r) {
    const GroupMember& m = members[r];
    if (m.device.is_cpu())
      return {false, fmt::format("CPU ring: rank {} is on {}, NCCL needs every rank on a GPU", r, m.device.str())};
    auto [it, fresh] = seen.emplace(std::make_pair(m.host, m.device.index), r);
    if (!fresh)
      return {false, fmt::format("CPU ring: ranks {} and {} share {}{}; an NCCL communicator needs one GPU per rank",
                                 it->second, r, m.device.str(), m.host.empty() ? "" : " on " + m.host)};
  }
  if (!built) return {false, "CPU ring: this build has no NCCL (configure with CUDA and NCCL available)"};
  return {true, fmt::format("NCCL: {} ranks, one GPU each", members.size())};
}

}  // namespace troupe::nccl
