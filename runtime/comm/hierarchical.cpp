// Owns the hierarchical allreduce's block loop (members send, the leader reduces, the leaders exchange one block ahead, the leader broadcasts) and its host arithmetic.
#include "runtime/comm/hierarchical.h"

#include <algorithm>
#include <map>

#include "runtime/comm/elementwise.h"
#include "runtime/comm/ring.h"
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

std::size_t hierarchical_block_bytes(std::size_t bytes) {
  return std::clamp(bytes / 16, std::size_t{64} << 10, std::size_t{4} << 20);
}

std::vector<ChunkRange> hierarchical_blocks(std::size_t elements, std::size_t block) {
  TROUPE_CHECK(block > 0, "hierarchical blocks of 0 elements");
  std::vector<std::size_t> ramp;  // block/16 .. block/2
  for (int shift = 4; shift >= 1; --shift) ramp.push_back(std::max<std::size_t>(1, block >> shift));
  std::size_t ramp_elements = 0;
  for (std::size_t r : ramp) ramp_elements += r;
  const bool ramps = elements >= 2 * ramp_elements + block;
  std::vector<std::size_t> lengths;
  if (ramps) lengths = ramp;
  const std::size_t middle = ramps ? elements - 2 * ramp_elements : elements;
  const std::size_t pieces = (middle + block - 1) / block;
  for (std::size_t p = 0; p < pieces; ++p) lengths.push_back(ring_chunk(middle, static_cast<int>(pieces), static_cast<int>(p)).length);
  if (ramps) lengths.insert(lengths.end(), ramp.rbegin(), ramp.rend());
  std::vector<ChunkRange> blocks;
  std::size_t offset = 0;
  for (std::size_t length : lengths) {
    blocks.push_back({offset, length});
    offset += length;
  }
  return blocks;
}

std::size_t hierarchical_bytes_sent(std::span<const int> host_of, int rank, std::size_t bytes) {
  const auto hosts = host_members(host_of);
  for (const auto& local : hosts) {
    if (std::find(local.begin(), local.end(), rank) == local.end()) continue;
    if (local.front() != rank) return bytes;
    const std::size_t h = hosts.size();
    return (local.size() - 1) * bytes + 2 * (h - 1) * bytes / h;
  }
  TROUPE_CHECK(false, "rank ", rank, " is on no host of ", host_of.size());
  return 0;
}

namespace {

// How many blocks a leader runs each step ahead of the next (the pipeline below): 3 blocks of 4 MiB keep
// about 100 ms of a 1 Gbit/s link queued, more than a loaded machine's scheduling gaps. Measured over a
// 1 Gbit/s link, 2 hosts x 2 ranks, 5 alternated rounds (docs/multi-host.md): at 64 MiB 3 took 563.7 ms
// (median), 2 took 567.4 and 4 took 566.9 (the bound is 561.8); at 16 MiB all three were within 1 ms.
constexpr std::size_t kBlocksAhead = 3;
// How far a non-leader's sends run ahead of the totals it has received back: at least 2·kBlocksAhead + 2
// blocks (the leader broadcasts block b 2·kBlocksAhead steps after it reduced it, so the member's block
// b + 2 goes out two steps before the leader needs it, and the leader never waits on a member that waits
// on it), and kMemberBytesAhead. Why pace: sending all blocks at once made the shared-memory
// transport copy all but its ring's worth aside (64 MiB: 60 MiB, freshly allocated) at the start of
// every allreduce, on every host at once, just when the leaders must restart the link. Measured over a
// 1 Gbit/s link on a loaded machine (docs/multi-host.md), 64 MiB ran 4-8% faster than before with this
// and the small end blocks, 0-4% of it this. Blocks are now lent (send_lent: what the ring has no room
// for is written from `data`, never copied), which removed the rest of those copies (16 MiB's 12 MiB
// still went aside under the pacing); whether the pacing still pays has not been measured since. Why at least 16 MiB: six 1 MiB blocks (a 16 MiB buffer)
// would put a member's wake-up on the leader's path every few milliseconds (one run: 15% slower, though
// within that machine's noise at that size), so small buffers still go nearly all at once.
constexpr std::size_t kMemberBlocksAhead = 2 * kBlocksAhead + 2;
constexpr std::size_t kMemberBytesAhead = std::size_t{16} << 20;

// The leaders' exchange of one block, direct.h's pattern across hosts: the block is cut into one equal
// range per leader; each leader sends every other leader that leader's range of its host's partial sum
// (reduce), sums its own range over all hosts in leader order, and sends the result to every other
// leader (gather). Split into calls so that the block loop can stream each phase over all blocks.
template <class T>
struct Across {
  Transport& transport;
  const std::vector<int>& leaders;  // by host
  int me;                           // this leader's host
  std::vector<T> inbox, sum;        // a received range; the range's sum so far

  int hosts() const { return static_cast<int>(leaders.size()); }
  std::span<T> range(std::span<T> block, int host) const {
    const ChunkRange c = ring_chunk(block.size(), hosts(), host);
    return block.subspan(c.offset, c.length);
  }
  // To every other leader: its range of this host's partial sum.
  void send_partials(std::span<T> block) {
    for (int h = 0; h < hosts(); ++h)
      if (h != me) transport.send(leaders[static_cast<std::size_t>(h)], kHierAcrossReduceTag, std::as_bytes(range(block, h)));
  }
  // This leader's range summed over the hosts, in host order: ((p_0 + p_1) + p_2) + ...
  void reduce_own(std::span<T> block) {
    const std::span<T> mine = range(block, me);
    inbox.resize(mine.size());
    if (me == 0 || hosts() == 2) {
      // The sum can grow in place: host 0's leader adds each later partial to its own (mine + p_h);
      // of two hosts, host 1's leader adds its own to host 0's (p_0 + mine). Same operands, same order
      // as below, one pass over the range fewer and no copies.
      for (int h = 0; h < hosts(); ++h) {
        if (h == me) continue;
        transport.recv(leaders[static_cast<std::size_t>(h)], kHierAcrossReduceTag, std::as_writable_bytes(std::span<T>(inbox)));
        if (me == 0) add_into(mine.data(), mine.data(), inbox.data(), mine.size());
        else add_into(mine.data(), inbox.data(), mine.data(), mine.size());
      }
      return;
    }
    sum.resize(mine.size());
    for (int h = 0; h < hosts(); ++h) {
      std::span<const T> part = mine;
      if (h != me) {
        transport.recv(leaders[static_cast<std::size_t>(h)], kHierAcrossReduceTag, std::as_writable_bytes(std::span<T>(inbox)));
        part = inbox;  // host h's partial of this range, from its leader
      }
      if (h == 0) std::copy(part.begin(), part.end(), sum.begin());
      else add_into(sum.data(), sum.data(), part.data(), sum.size());
    }
    std::copy(sum.begin(), sum.end(), mine.begin());
  }
  // The finished range to every other leader.
  void send_own(std::span<T> block) {
    for (int h = 0; h < hosts(); ++h)
      if (h != me) transport.send(leaders[static_cast<std::size_t>(h)], kHierAcrossGatherTag, std::as_bytes(range(block, me)));
  }
  // Every other leader's finished range, into place.
  void gather_others(std::span<T> block) {
    for (int h = 0; h < hosts(); ++h)
      if (h != me)
        transport.recv(leaders[static_cast<std::size_t>(h)], kHierAcrossGatherTag, std::as_writable_bytes(range(block, h)));
  }
};

}  // namespace

template <class T>
void allreduce_hierarchical(Transport& transport, std::span<T> data, std::span<const int> host_of,
                            HierarchicalOptions options) {
  const int rank = transport.rank();
  TROUPE_CHECK(static_cast<int>(host_of.size()) == transport.size(), host_of.size(), " host indices for ",
               transport.size(), " ranks");
  const auto hosts = host_members(host_of);
  std::vector<int> leaders;
  int me = -1;  // this rank's host, in host order
  for (std::size_t h = 0; h < hosts.size(); ++h) {
    leaders.push_back(hosts[h].front());
    if (std::find(hosts[h].begin(), hosts[h].end(), rank) != hosts[h].end()) me = static_cast<int>(h);
  }
  const std::vector<int>& local = hosts[static_cast<std::size_t>(me)];  // its leader first
  const int leader = local.front();

  const std::size_t block_bytes = options.block_bytes ? options.block_bytes : hierarchical_block_bytes(data.size_bytes());
  const std::size_t block = std::max<std::size_t>(1, block_bytes / sizeof(T));
  const std::vector<ChunkRange> cuts = hierarchical_blocks(data.size(), block);
  const std::size_t blocks = cuts.size();
  auto block_of = [&](std::size_t b) { return data.subspan(cuts[b].offset, cuts[b].length); };
  // Blocks go to the leader, and totals back, as lent sends (Transport::send_lent): on return, or when an
  // error unwinds, nothing the transport still holds reads `data`.
  struct ReleaseLent {
    Transport& transport;
    ~ReleaseLent() { transport.release_lent(); }
  } release_lent{transport};

  if (rank != leader) {
    const std::size_t bytes_ahead = options.member_bytes_ahead ? options.member_bytes_ahead : kMemberBytesAhead;
    const std::size_t ahead = std::max(kMemberBlocksAhead, (bytes_ahead + block * sizeof(T) - 1) / (block * sizeof(T)));
    std::size_t done = 0;  // blocks whose total is back
    for (std::size_t b = 0; b < blocks; ++b) {
      if (b >= done + ahead)  // the total of block `done`, from the leader
        transport.recv(leader, kHierBroadcastTag, std::as_writable_bytes(block_of(done++)));
      // Lent (no copy aside): the member writes block b again only when its total comes back, which
      // the leader sends after it has received block b.
      transport.send_lent(leader, kHierReduceTag, std::as_bytes(block_of(b)));  // to the leader
    }
    for (; done < blocks; ++done) transport.recv(leader, kHierBroadcastTag, std::as_writable_bytes(block_of(done)));
    return;
  }
  std::vector<T> inbox(std::min(block, data.size()));  // a local rank's block, before it is added
  const auto reduce_local = [&](std::span<T> mine) {
    const std::span<T> in(inbox.data(), mine.size());
    for (std::size_t m = 1; m < local.size(); ++m) {
      transport.recv(local[m], kHierReduceTag, std::as_writable_bytes(in));  // from local rank m, in rank order
      add_into(mine.data(), mine.data(), in.data(), mine.size());           // (partial so far) + rank m's
    }
  };
  Across<T> across{transport, leaders, me, {}, {}};
  const auto broadcast = [&](std::span<T> done) {  // lent: a finished block is not written again
    for (std::size_t m = 1; m < local.size(); ++m) transport.send_lent(local[m], kHierBroadcastTag, std::as_bytes(done));
  };
  if (leaders.size() == 1) {
    for (std::size_t b = 0; b < blocks; ++b) {
      reduce_local(block_of(b));
      broadcast(block_of(b));
    }
    return;
  }
  // A software pipeline over the blocks, three steps apart by kBlocksAhead: at step s the leader reduces
  // block s locally and queues its ranges for the other leaders, sums its own range of block s - A, and
  // takes the other leaders' results for block s - 2A and broadcasts it. The link between hosts thus has
  // A blocks queued while a leader adds, and each recv is posted before (or soon after) its message
  // arrives, so the TCP transport rarely buffers one.
  constexpr std::size_t A = kBlocksAhead;
  for (std::size_t step = 0; step < blocks + 2 * A; ++step) {
    if (step < blocks) {
      reduce_local(block_of(step));
      across.send_partials(block_of(step));
    }
    if (step >= A && step - A < blocks) {
      across.reduce_own(block_of(step - A));
      across.send_own(block_of(step - A));
    }
    if (step >= 2 * A && step - 2 * A < blocks) {
      across.gather_others(block_of(step - 2 * A));
      broadcast(block_of(step - 2 * A));
    }
  }
}

template void allreduce_hierarchical<float>(Transport&, std::span<float>, std::span<const int>, HierarchicalOptions);
template void allreduce_hierarchical<double>(Transport&, std::span<double>, std::span<const int>, HierarchicalOptions);
template void allreduce_hierarchical<std::int64_t>(Transport&, std::span<std::int64_t>, std::span<const int>,
                                                   HierarchicalOptions);
template void allreduce_hierarchical<__int128>(Transport&, std::span<__int128>, std::span<const int>, HierarchicalOptions);

}  // namespace troupe::comm
