// Owns the hierarchical allreduce's block loop (members send, the leader reduces, the leaders allreduce, the leader broadcasts) and its host arithmetic.
#include "runtime/comm/hierarchical.h"

#include <algorithm>
#include <map>

#include "runtime/comm/allreduce.h"
#include "runtime/comm/elementwise.h"
#include "runtime/comm/subgroup_transport.h"
#include "runtime/error.h"

namespace troupe::comm {

std::vector<int> host_indices(const std::vector<std::string>& host_names) {
  std::vector<int> out;
  std::map<std::string, int> seen;
  for (const std::string& name : host_names) out.push_back(seen.emplace(name, static_cast<int>(seen.size())).first->second);
  return out;
}

std::vector<std::vector<int>> host_members(std::span<const int> host_of) {
  std::map<int, std::vector<int>> by_index;
  for (std::size_t r = 0; r < host_of.size(); ++r) {
    TROUPE_CHECK(host_of[r] >= 0, "rank ", r, " on host index ", host_of[r]);
    by_index[host_of[r]].push_back(static_cast<int>(r));
  }
  std::vector<std::vector<int>> hosts;
  for (auto& [index, ranks] : by_index) hosts.push_back(std::move(ranks));
  std::sort(hosts.begin(), hosts.end(), [](const auto& a, const auto& b) { return a.front() < b.front(); });
  return hosts;
}

std::vector<int> host_leaders(std::span<const int> host_of) {
  std::vector<int> leaders;
  for (const auto& ranks : host_members(host_of)) leaders.push_back(ranks.front());
  return leaders;
}

bool hierarchy_pays(std::span<const int> host_of) {
  const auto hosts = host_members(host_of);
  return hosts.size() >= 2 && hosts.size() < host_of.size();
}

template <class T>
void allreduce_hierarchical(Transport& transport, std::span<T> data, std::span<const int> host_of,
                            HierarchicalOptions options) {
  const int rank = transport.rank();
  TROUPE_CHECK(static_cast<int>(host_of.size()) == transport.size(), host_of.size(), " host indices for ",
               transport.size(), " ranks");
  TROUPE_CHECK(options.block_bytes > 0, "hierarchical allreduce block of 0 bytes");
  const auto hosts = host_members(host_of);
  std::vector<int> leaders;
  for (const auto& ranks : hosts) leaders.push_back(ranks.front());
  const std::vector<int>* local = nullptr;  // this rank's host: its leader first
  for (const auto& ranks : hosts)
    if (std::find(ranks.begin(), ranks.end(), rank) != ranks.end()) local = &ranks;
  const int leader = local->front();

  const std::size_t block = std::max<std::size_t>(1, options.block_bytes / sizeof(T));
  const std::size_t blocks = (data.size() + block - 1) / block;
  auto block_of = [&](std::size_t b) { return data.subspan(b * block, std::min(block, data.size() - b * block)); };

  if (rank != leader) {
    for (std::size_t b = 0; b < blocks; ++b) transport.send(leader, kHierReduceTag, std::as_bytes(block_of(b)));  // to the leader
    for (std::size_t b = 0; b < blocks; ++b)
      transport.recv(leader, kHierBroadcastTag, std::as_writable_bytes(block_of(b)));  // the total, from the leader
    return;
  }
  SubgroupTransport across(transport, leaders);
  std::vector<T> inbox(std::min(block, data.size()));  // a local rank's block, before it is added
  for (std::size_t b = 0; b < blocks; ++b) {
    const std::span<T> mine = block_of(b);
    const std::span<T> in(inbox.data(), mine.size());
    for (std::size_t m = 1; m < local->size(); ++m) {
      transport.recv((*local)[m], kHierReduceTag, std::as_writable_bytes(in));  // from local rank m, in rank order
      add_into(mine.data(), mine.data(), in.data(), mine.size());               // (partial so far) + rank m's
    }
    // Every leader's block has the same length, so all of them take the same algorithm.
    if (across.size() > 1) allreduce<T>(across, mine, AllreduceAlgo::kAuto, options.ring);
    for (std::size_t m = 1; m < local->size(); ++m) transport.send((*local)[m], kHierBroadcastTag, std::as_bytes(mine));
  }
}

template void allreduce_hierarchical<float>(Transport&, std::span<float>, std::span<const int>, HierarchicalOptions);
template void allreduce_hierarchical<double>(Transport&, std::span<double>, std::span<const int>, HierarchicalOptions);
template void allreduce_hierarchical<std::int64_t>(Transport&, std::span<std::int64_t>, std::span<const int>,
                                                   HierarchicalOptions);
template void allreduce_hierarchical<__int128>(Transport&, std::span<__int128>, std::span<const int>, HierarchicalOptions);

}  // namespace troupe::comm
