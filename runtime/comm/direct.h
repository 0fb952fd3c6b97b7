// Owns the direct (all-to-all pattern) reduce-scatter and all-gather over caller-given ranges, generic over the element type.
//
// Each rank owns a contiguous range of the buffer (ranges[r], possibly empty, disjoint, any sizes). n =
// ranks, B = bytes of the buffer.
//
//   reduce_scatter_direct  1 round: rank r sends every other rank o its slice ranges[o] and receives
//                          ranges[r] from every other rank; it then adds the n contributions to its range
//                          in rank order 0, 1, ..., n-1 (its own at position r). Bytes sent per rank:
//                          B - |ranges[r]|, i.e. (n - 1)/n · B for equal ranges — as much as the ring, in
//                          one round instead of n - 1, over n - 1 connections at once.
//   all_gather_direct      1 round: rank r sends its range to every other rank and receives each other
//                          rank's range. Bytes sent per rank: (n - 1) · |ranges[r]|.
//
// Determinism: the sum of every element is formed in rank order by its owner only, then copied, so
// every rank ends with bitwise-identical values on every run — and the order is the same for every
// element (unlike the ring, whose order starts at a different rank per chunk). Parameter-server shards
// and ZeRO's optimizer shards use the same ownership idea.
//
// Sends all go out before any receive (Transport::send never waits for the receiver), so the pattern
// cannot deadlock. Errors are the Transport's (troupe::Error kIo naming the peer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/comm/ring.h"
#include "runtime/comm/transport.h"

namespace troupe::comm {

inline constexpr std::uint32_t kDirectReduceTag = 0x7272'0011;
inline constexpr std::uint32_t kDirectGatherTag = 0x7272'0012;

// n elements split into `ranks` contiguous near-equal ranges (ring_chunk's split), one per rank.
std::vector<ChunkRange> equal_ranges(std::size_t n, int ranks);

// In place: on return data[ranges[rank]] holds the rank-ordered sum over all ranks; the rest of `data`
// is left as it was. T: float, double or ExactSum (added with exact_add).
template <class T>
void reduce_scatter_direct(Transport& transport, std::span<T> data, const std::vector<ChunkRange>& ranges);

// In place: on entry data[ranges[rank]] holds this rank's part; on return every range holds its owner's.
template <class T>
void all_gather_direct(Transport& transport, std::span<T> data, const std::vector<ChunkRange>& ranges);

}  // namespace troupe::comm
