// Owns the hierarchical allreduce — reduce inside each host, allreduce across hosts among one leader per host, broadcast inside each host — and the pure host arithmetic it works from.
//
// Ranks are spread over hosts (host_of[r]: rank r's host, an index; the Topology's plan::Place::host,
// host_indices() numbers the names). Links inside a host are fast (shared memory, net/shm), links
// between hosts slow (TCP over the network). n = ranks, h = hosts, B = bytes of the buffer. The buffer
// is cut into blocks of HierarchicalOptions::block_bytes, the first and last few smaller
// (hierarchical_blocks); for each block, in order:
//
//   reduce     every non-leader sends the block to its host's leader (the host's lowest rank), which
//              adds them in rank order: ((x_leader + x_m1) + x_m2) + ...  Inside a host: (k - 1)·B bytes
//              reach a leader of k local ranks. Non-leaders send their blocks up to 16 MiB (at least eight
//              blocks) ahead of the totals they have back (send never waits), so the leader finds block
//              b + 1 waiting when it is done with block b. Blocks and totals are lent sends
//              (Transport::send_lent): what the shared-memory ring has no room for is written from the
//              buffer itself, not copied aside into fresh memory at the start of every allreduce.
//   across     the leaders sum the block among themselves, direct.h's pattern: the block is cut into
//              one near-equal range per host (ring_chunk); each leader sends every other leader that
//              leader's range of its host's partial sum, adds its own range over all hosts in host
//              order ((p_0 + p_1) + p_2) + ..., and sends the result back to every other leader. Across
//              hosts: 2(h - 1)/h · B bytes sent per leader, in 2 rounds per block — the only traffic
//              between hosts, against 2(n - 1)/n · B per rank for a flat ring, which crosses between
//              hosts at least h times (2 hosts x 2 ranks: 1 · B instead of 1.5 · B over each direction
//              of the link between them, so at best 1.5x faster when the link is the bottleneck).
//   broadcast  the leader sends the finished block to each of its local ranks.
//
// Pipelining: a leader runs its steps three blocks apart — while it reduces block b locally and queues
// its ranges, it sums its own range of block b - 3 and takes the other leaders' results for block b - 6
// (broadcasting them) — so send never waits, the link between hosts keeps three blocks queued while the
// leader adds, and each recv is posted about when its message arrives. Steps per block: (k - 1)
// receives at the leader, 2 rounds among the leaders, (k - 1) sends.

// Determinism: every element's sum is formed once, in a fixed order — each host's partial in rank
// order by its leader, then the hosts' partials in host order by the leader that owns the range — and
// then only copied, so every rank ends bitwise equal, on every run, and the bits depend on the host
// layout alone (not on the block size or the transport). The float bits differ from a flat ring's;
// integer types (troupe::ExactSum, the deterministic mode's buckets) give the same bits either way.
//
// Errors: those of the Transport (troupe::Error kIo naming the peer). Every rank must pass the same
// host_of, buffer length and options.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/comm/ring.h"
#include "runtime/comm/transport.h"

namespace troupe::comm {

inline constexpr std::uint32_t kHierReduceTag = 0x7272'0031;
inline constexpr std::uint32_t kHierBroadcastTag = 0x7272'0032;
inline constexpr std::uint32_t kHierAcrossReduceTag = 0x7272'0033;
inline constexpr std::uint32_t kHierAcrossGatherTag = 0x7272'0034;

struct HierarchicalOptions {
  // Bytes per block (rounded down to whole elements, at least one); 0: hierarchical_block_bytes(buffer).
  // Tests make it small. The block size changes the messages, never the bits.
  std::size_t block_bytes = 0;
  // How far a non-leader's sends may run ahead of the totals it has received back, in bytes (never fewer
  // than 2·3 + 2 blocks); 0: 16 MiB. Tests make it small, to reach the paced path. Changes when messages
  // go, never the bits.
  std::size_t member_bytes_ahead = 0;
};

// The default block for a buffer of `bytes`: a sixteenth of it, within [64 KiB, 4 MiB], so that the
// pipeline (below) has blocks to overlap even for a small buffer and few, large messages for a large
// one. Measured over a 1 Gbit/s link, 2 hosts x 2 ranks (docs/multi-host.md): fixed 4 MiB blocks
// reached 87% of the link at 64 MiB but 65% at 16 MiB (four blocks fill and drain the pipeline).
std::size_t hierarchical_block_bytes(std::size_t bytes);

// The blocks a buffer of `elements` is cut into, in order, for blocks of `block` (> 0) elements: a ramp of
// block/16, /8, /4, /2 (at least 1 each), then blocks of at most `block` (near-equal), then the ramp
// reversed — when the buffer holds both ramps and one full block; else near-equal blocks of at most
// `block`. Empty for no elements. Why the ramps: the link between hosts idles from the end of one
// allreduce until the first block of the next is reduced inside the host, and again while the last
// block crosses to the other hosts and is broadcast; small blocks there shorten both gaps (measured in
// docs/multi-host.md), big ones in the middle keep the messages few.
std::vector<ChunkRange> hierarchical_blocks(std::size_t elements, std::size_t block);

// Hosts as indices 0, 1, ... in the order of their first rank: {"a", "b", "a"} -> {0, 1, 0}.
std::vector<int> host_indices(const std::vector<std::string>& host_names);

// The ranks of every host, ascending, hosts in the order of their first rank (whatever their indices:
// {1, 0, 1} gives {{0, 2}, {1}}). A negative index fails TROUPE_CHECK.
std::vector<std::vector<int>> host_members(std::span<const int> host_of);

// Each host's leader: its lowest rank, in host order.
std::vector<int> host_leaders(std::span<const int> host_of);

// Whether the hierarchy is worth taking: at least two hosts, and at least one host with several ranks
// (else it is the flat allreduce with extra hops).
bool hierarchy_pays(std::span<const int> host_of);

// Bytes rank `rank` sends in one hierarchical allreduce of `bytes`: a non-leader its buffer; a leader of
// k local ranks (k - 1)·B to them plus its share across h hosts, (h - 1) ranges of about B/h twice.
std::size_t hierarchical_bytes_sent(std::span<const int> host_of, int rank, std::size_t bytes);

// In place: on return every rank's `data` is the elementwise sum of all ranks' inputs, bitwise equal on
// every rank. T: float, double, std::int64_t, __int128. host_of.size() == transport.size().
template <class T>
void allreduce_hierarchical(Transport& transport, std::span<T> data, std::span<const int> host_of,
                            HierarchicalOptions options = {});

}  // namespace troupe::comm
