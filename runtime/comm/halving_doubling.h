// Owns recursive halving-doubling allreduce (Rabenseifner), generic over the element type, for any rank count, and its pure rank arithmetic.
//
// n = ranks, p = the largest power of two <= n, rem = n - p, B = bytes of the buffer. The buffer is cut
// into p near-equal contiguous blocks (ring_chunk(size, p, i)).
//
//   fold        (only when n is not a power of two) ranks 0 .. 2·rem - 1 pair up (2i, 2i + 1): the even
//               rank sends its whole buffer to the odd one, which adds it (even's + odd's) and goes on
//               as virtual rank i; the even rank sits out. Ranks 2·rem .. n - 1 are virtual rank
//               r - rem. 1 step, B bytes from each even rank.
//   halving     log2 p steps among the p virtual ranks. At the step with mask m (p/2, p/4, …, 1),
//               virtual rank v and its partner v xor m split their current block range in two; v keeps
//               the lower half when v & m == 0, sends the other half to the partner, receives the
//               partner's copy of the half it keeps and adds it (lower virtual rank's values first).
//               Afterwards v holds block v fully reduced. Bytes per rank: (p - 1)/p · B.
//   doubling    log2 p steps, the halving's in reverse: partners swap what they hold, each copying the
//               other's half into place. Bytes per rank: (p - 1)/p · B.
//   unfold      (only when n is not a power of two) each odd rank 2i + 1 < 2·rem sends the result to 2i.
//               1 step, B bytes.
//
// So 2·log2 p steps (+2 when n is not a power of two) and 2(p - 1)/p · B bytes sent per virtual rank:
// the ring's bytes in logarithmically many steps. Each step is one message each way between one pair,
// so the latency term is 2·log2 p message hops against the ring's 2(n - 1); for large buffers the ring
// wins because it streams its chunks in segments, overlapping transfers with additions, while each
// halving step moves up to half the buffer as one message and adds it only once it has all arrived
// (measured: README "Collectives"), hence allreduce() in allreduce.h picks by size.
//
// Determinism: every partial sum is formed exactly once, by the rank that keeps it, in a fixed order
// (lower virtual rank first; a folded pair even first), and the doubling only copies. So every rank
// ends with bitwise-identical values, on every run. The order differs from the ring's, so the two
// algorithms' float results may differ in the last bits; integer types (wrapping sums) agree exactly.
//
// Errors: those of the Transport (troupe::Error kIo naming the peer), as for the ring collectives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "runtime/comm/transport.h"

namespace troupe::comm {

inline constexpr std::uint32_t kHalvingDoublingTag = 0x7272'0021;

// The largest power of two <= ranks (ranks >= 1).
int hd_power(int ranks);
// The virtual rank `rank` takes in the halving and doubling, or -1 for an even rank below 2·rem that
// folds its buffer into rank + 1 and sits out.
int hd_virtual_rank(int ranks, int rank);
// The real rank behind virtual rank `vrank` (in [0, hd_power(ranks))).
int hd_real_rank(int ranks, int vrank);

// In place: on return every rank's `data` is the elementwise sum of all ranks' inputs, bitwise equal on
// every rank. T: float, double, std::int64_t, __int128 (integers wrap).
template <class T>
void allreduce_halving_doubling(Transport& transport, std::span<T> data);

}  // namespace troupe::comm
