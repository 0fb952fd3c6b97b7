// Owns the shared-memory allreduce: the ring's sums, computed in place by ranks that share a SharedWindow, in pieces and with three progress counters instead of 2(n - 1) message hand-offs per segment; and its pure piece/part arithmetic.
//
// n = ranks, B = bytes of the buffer, C = the window's piece bytes, P = its pieces per rank.
// The buffer is cut into pieces of C bytes (shared_piece); piece k of rank r's buffer goes through
// staging slot (g mod P) of rank r's region, g = k + the pieces this window has carried before.
// Each piece takes three steps on every rank, each ending in a publish of one counter:
//
//   stage     copy this rank's piece, but for its own part, into its own staging slot
//             (first wait until every rank has copied piece g - P out: the slot is free again)
//                                                                            counter kStaged    = g + 1
//   reduce    wait until every rank has staged piece g; sum part `rank` of the piece
//             (shared_reduce_part: the ring's chunking of the piece) from the n - 1 peers' slots and
//             this rank's own buffer, in the ring's order, into the buffer and this rank's slot
//                                                                            counter kReduced   = g + 1
//   copy out  for every other rank q, wait until q has reduced piece g; copy part q of the piece
//             from q's slot into the buffer                                  counter kCopiedOut = g + 1
//
// A rank runs the steps of three pieces at once (copy out k - 2, reduce k - 1, stage k), so it waits
// only for peers to be where it was before, and up to P pieces are in flight. Copies per byte of the
// buffer per rank: (n - 1)/n in, (n - 1)/n out, and reading all n inputs once while reducing (the ring
// over messages: 1.5 into a transport's buffer, 1.5 out and 0.75 while reducing); synchronisations: 3
// per piece, none of them a hand-off along a chain of n - 1 ranks. No rank reads another's buffer, so
// a rank returns as soon as its own buffer is complete; the next collective's stage step waits for
// the slots.
//
// Determinism: bitwise equal to allreduce_ring (ring.h) for every n and length. Every element
// belongs to a chunk c of the ring's chunking of the whole buffer (ring_chunk), which the ring sums
// as ((x_c + x_{c+1}) + x_{c+2}) + … + x_{c-1} (ranks mod n, each addition `partial + next`); the
// reduce step sums each element in exactly that order, whichever rank reduces it. Integer types
// wrap as everywhere (elementwise.h).
//
// Errors: whatever SharedWindow::wait_for throws (troupe::Error(kIo) naming a dead, closed or
// stalled peer). After a throw the buffer is unspecified and the group must not be reused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "runtime/comm/ring.h"
#include "runtime/comm/shared_window.h"

namespace troupe::comm {

// The window counters this algorithm publishes (SharedWindow::kCounters of them exist).
inline constexpr int kStagedCounter = 0;
inline constexpr int kReducedCounter = 1;
inline constexpr int kCopiedOutCounter = 2;

// How many pieces a buffer of `n` elements takes at `piece_elems` (> 0) each: ceil(n / piece_elems).
std::size_t shared_piece_count(std::size_t n, std::size_t piece_elems);
// Piece `k` of that buffer: [k·piece_elems, ...), the last one shorter.
ChunkRange shared_piece(std::size_t n, std::size_t piece_elems, std::size_t k);
// The part of `piece` (buffer positions) that `rank` reduces: the ring's chunk `rank` of the piece.
ChunkRange shared_reduce_part(ChunkRange piece, int ranks, int rank);
// The ring chunk (ring_chunk(n, ranks, c)) that holds element `index` (< n) of an n-element buffer:
// the rank whose input the ring's sum of that element starts with.
int ring_chunk_of(std::size_t n, int ranks, std::size_t index);

// In place: on return every rank's `data` is the elementwise sum of all ranks' inputs, bitwise equal
// to allreduce_ring's on every rank. All ranks of the window pass the same length. T: float, double,
// std::int64_t or __int128 (troupe::ExactSum).
template <class T>
void allreduce_shared_memory(SharedWindow& window, std::span<T> data);

}  // namespace troupe::comm
