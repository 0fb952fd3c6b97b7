// Owns the ring collectives (allreduce, reduce-scatter, all-gather, broadcast), generic over the element type, and their pure chunk/step arithmetic.
//
// Algorithms (gloo gloo/allreduce_ring.h and docs/algorithms.md are the model). n = ranks, B = bytes
// of the buffer. Every rank splits its buffer the same way into n near-equal contiguous chunks
// (ring_chunk), and talks only to its ring neighbours: right = (r + 1) mod n, left = (r - 1) mod n.
//
//   reduce_scatter_ring  n - 1 steps. At step s rank r sends chunk (r - s) mod n to its right and
//                        receives chunk (r - s - 1) mod n from its left, adding it into its own copy.
//                        Afterwards rank r holds the full sum of chunk ring_owned_chunk(n, r) =
//                        (r + 1) mod n. Bytes sent per rank: (n - 1)/n · B.
//   all_gather_ring      n - 1 steps. At step s rank r sends chunk (r + 1 - s) mod n to its right and
//                        receives chunk (r - s) mod n from its left, overwriting its copy. Input: each
//                        rank's owned chunk; output: every chunk everywhere. Bytes per rank: (n - 1)/n · B.
//   allreduce_ring       reduce-scatter then all-gather: 2(n - 1) steps, 2(n - 1)/n · B bytes sent per
//                        rank (and as many received) — independent of n for large n, which is why
//                        the ring is bandwidth-optimal. Latency term: 2(n - 1) message hops, so
//                        small buffers go to recursive halving-doubling instead (allreduce.h).
//   broadcast            the root's buffer travels the ring root → root+1 → … → root-1 in n chunks
//                        (each in segments), pipelined: each non-root receives a segment from its left
//                        and forwards it to its right (unless its right is the root). 2n - 2 steps in
//                        the pipeline's critical path (+ segments - 1), at most B bytes sent per rank
//                        (the last rank sends none).
//
// Segments (pipelining): every chunk travels as messages of at most RingOptions::segment_bytes
// (ring_segment). A rank forwards segment k of a chunk as soon as it has added it, while its left
// neighbour is still sending segment k + 1: a chunk no longer crosses the ring one whole step at a
// time, so the reduction of one segment overlaps the transfer of the next, and the first segment of
// the all-gather leaves as soon as the last reduce-scatter step has summed it. Segment boundaries
// depend only on (buffer length, ranks, segment size), so every rank agrees on them; they change the
// number of messages, never the order of the additions, so the result's bits do not depend on the
// segment size. Steps in the critical path: 2(n - 1) + (segments per chunk - 1).
//
// Determinism: every rank ends with bitwise-identical results. Each chunk's sum is computed exactly
// once, along the ring starting at the rank that owns index c: ((x_c + x_{c+1}) + x_{c+2}) + … , and
// then only copied. So the float rounding is the same on every rank and on every run, although it
// differs from, say, summing in rank order.
//
// Element types: every collective is a template over T, explicitly instantiated for float, double,
// std::int64_t and __int128 (troupe::ExactSum, runtime/exact_sum.h). Integers are added as their unsigned
// counterparts, i.e. the wrapping two's-complement sum: integer addition is associative, so for the
// integer types the result does not even depend on the order (any algorithm gives the same bits).
// Non-template float overloads keep calls with a std::vector<float> compiling; for the other types pass
// a std::span<T>, or name T (allreduce_ring<double>(t, v)) so the vector converts.
//
// Errors: the collectives throw whatever the Transport throws (troupe::Error(kIo) for a peer of a
// wrong size, a timeout or a dead peer). After a throw the buffer's contents are unspecified and the
// group must not be reused for further collectives. All ranks must call the same collective with
// buffers of the same length (and the same root); a different length shows up as a size error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "runtime/comm/transport.h"

namespace troupe::comm {

// How a ring collective cuts its chunks into messages. The default was chosen by measurement
// (README "Collectives": 4 ranks, 16 and 64 MiB, 1 MiB segments 1.15-1.4x faster than whole chunks
// over TCP and the in-process transport on a quiet machine, 1.6-3x under load; 64 KiB slowest);
// tests set it small so that small inputs take the multi-segment path.
inline constexpr std::size_t kRingSegmentBytes = std::size_t{1} << 20;
struct RingOptions {
  std::size_t segment_bytes = kRingSegmentBytes;  // > 0; rounded down to whole elements, at least one
};

// Message tags of the ring collectives. Messages between two ranks are FIFO per tag, so back-to-back
// collectives on one Transport need no sequence numbers.
inline constexpr std::uint32_t kReduceScatterTag = 0x7272'0001;
inline constexpr std::uint32_t kAllGatherTag = 0x7272'0002;
inline constexpr std::uint32_t kBroadcastTag = 0x7272'0003;

// Elements [offset, offset + length) of a buffer.
struct ChunkRange {
  std::size_t offset = 0;
  std::size_t length = 0;
  bool operator==(const ChunkRange&) const = default;
};

// Chunk `index` of n elements split into `ranks` contiguous chunks whose lengths differ by at most
// one; the first n mod ranks chunks are the longer ones. Chunks may be empty when n < ranks.
ChunkRange ring_chunk(std::size_t n, int ranks, int index);

// How many messages a chunk of `length` elements travels as, at `segment_elems` (> 0) elements each:
// ceil(length / segment_elems); 0 for an empty chunk (which sends nothing).
std::size_t ring_segment_count(std::size_t length, std::size_t segment_elems);
// Segment `k` of `chunk`: [chunk.offset + k·segment_elems, ...), the last one shorter.
ChunkRange ring_segment(ChunkRange chunk, std::size_t segment_elems, std::size_t k);

// Who a rank talks to at one step of a ring phase, and which chunks move.
struct RingStep {
  int send_to = 0;
  int send_chunk = 0;
  int recv_from = 0;
  int recv_chunk = 0;
  bool operator==(const RingStep&) const = default;
};

// Step `step` (in [0, ranks - 1)) of reduce-scatter for `rank`: sends chunk (r - s) mod n to
// (r + 1) mod n, receives chunk (r - s - 1) mod n from (r - 1) mod n.
RingStep reduce_scatter_step(int ranks, int rank, int step);
// Step `step` of all-gather: sends chunk (r + 1 - s) mod n to (r + 1) mod n, receives chunk
// (r - s) mod n from (r - 1) mod n.
RingStep all_gather_step(int ranks, int rank, int step);
// The chunk `rank` holds fully reduced after reduce-scatter, and contributes to all-gather: (r + 1) mod n.
int ring_owned_chunk(int ranks, int rank);

// In place: on return every rank's `data` is the elementwise sum of all ranks' inputs, bitwise equal
// on every rank.
template <class T>
void allreduce_ring(Transport& transport, std::span<T> data, RingOptions options = {});

// In place: on return chunk ring_owned_chunk(size, rank) of `data` holds the sum over all ranks; the
// other chunks hold partial sums (unspecified).
template <class T>
void reduce_scatter_ring(Transport& transport, std::span<T> data, RingOptions options = {});

// In place: on entry chunk ring_owned_chunk(size, rank) of `data` holds this rank's part; on return
// every chunk holds its owner's part.
template <class T>
void all_gather_ring(Transport& transport, std::span<T> data, RingOptions options = {});

// In place: on return every rank's `data` is a bitwise copy of the root's.
template <class T>
void broadcast(Transport& transport, std::span<T> data, int root, RingOptions options = {});

// The float calls as they were before the templates (a std::vector<float> converts to the span).
inline void allreduce_ring(Transport& t, std::span<float> data, RingOptions o = {}) { allreduce_ring<float>(t, data, o); }
inline void reduce_scatter_ring(Transport& t, std::span<float> data, RingOptions o = {}) {
  reduce_scatter_ring<float>(t, data, o);
}
inline void all_gather_ring(Transport& t, std::span<float> data, RingOptions o = {}) { all_gather_ring<float>(t, data, o); }
inline void broadcast(Transport& t, std::span<float> data, int root, RingOptions o = {}) {
  broadcast<float>(t, data, root, o);
}

}  // namespace troupe::comm
