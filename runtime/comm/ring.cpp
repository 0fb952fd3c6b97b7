// Owns the ring collectives' segmented step loops over a Transport and the chunk/step/segment arithmetic they share.
#include "runtime/comm/ring.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "runtime/comm/elementwise.h"
#include "runtime/error.h"

namespace troupe::comm {

namespace {

int mod(int a, int n) { return ((a % n) + n) % n; }

// The ring as one rank sees it, set up once before the step loop (gloo's constructor).
template <class T>
struct Ring {
  Ring(Transport& t, std::span<T> d, RingOptions options)
      : transport(t),
        ranks(t.size()),
        rank(t.rank()),
        left(mod(rank - 1, ranks)),
        right(mod(rank + 1, ranks)),
        data(d),
        segment(std::max<std::size_t>(1, options.segment_bytes / sizeof(T))) {
    TROUPE_CHECK(ranks >= 1 && rank >= 0 && rank < ranks, "rank ", rank, " of ", ranks);
    TROUPE_CHECK(options.segment_bytes > 0, "ring segment of 0 bytes");
  }

  ChunkRange chunk(int index) const { return ring_chunk(data.size(), ranks, index); }
  std::size_t segments(int index) const { return ring_segment_count(chunk(index).length, segment); }
  std::span<T> piece(int index, std::size_t k) const {
    const ChunkRange s = ring_segment(chunk(index), segment, k);
    return data.subspan(s.offset, s.length);
  }
  // Every send lends its piece of `data` to the transport (Transport::send_lent: no copy where the
  // transport can write from it), which is safe because no piece is changed while it may be lent:
  //  * reduce-scatter sends each piece after its last change in that phase (it adds a piece, then
  //    sends it on) and all-gather and broadcast never change a piece they have sent;
  //  * all-gather overwrites the pieces reduce-scatter sent, but the finished piece it receives was
  //    summed from this rank's partial one, so that one had reached the right neighbour already;
  //  * the destructor (also when a step throws) waits until nothing lent is still being written,
  //    so the caller gets its buffer back free.
  ~Ring() { transport.release_lent(); }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  void send(std::span<const T> buf, std::uint32_t tag) { transport.send_lent(right, tag, std::as_bytes(buf)); }
  void recv(std::span<T> buf, std::uint32_t tag) { transport.recv(left, tag, std::as_writable_bytes(buf)); }

  // Reduce-scatter's n - 1 steps. Step 0's chunk leaves whole; afterwards each received segment is
  // added and, if another step follows (or `then_gather`, all-gather's step 0), sent on at once.
  void reduce_scatter(bool then_gather) {
    if (ranks == 1) return;
    const int first = reduce_scatter_step(ranks, rank, 0).send_chunk;
    for (std::size_t k = 0; k < segments(first); ++k) send(piece(first, k), kReduceScatterTag);  // to right
    std::vector<T> inbox(std::min(segment, chunk(0).length));  // a segment from left, before it is added
    for (int s = 0; s < ranks - 1; ++s) {
      const RingStep step = reduce_scatter_step(ranks, rank, s);
      const bool last = s == ranks - 2;
      for (std::size_t k = 0; k < segments(step.recv_chunk); ++k) {
        std::span<T> mine = piece(step.recv_chunk, k);
        std::span<T> in(inbox.data(), mine.size());
        recv(in, kReduceScatterTag);  // the partial sum so far along the ring, from left
        // incoming + ours: the same order on every rank for this chunk.
        add_into(mine.data(), in.data(), mine.data(), mine.size());
        // to right: step s + 1 sends exactly this chunk (reduce_scatter_step's send_chunk(s + 1) ==
        // recv_chunk(s)); after the last step it is the owned chunk all-gather starts with.
        if (!last) send(mine, kReduceScatterTag);
        else if (then_gather) send(mine, kAllGatherTag);
      }
    }
  }

  // All-gather's n - 1 steps; `started` when reduce_scatter(true) already sent step 0's chunk.
  void all_gather(bool started) {
    if (ranks == 1) return;
    if (!started) {
      const int first = all_gather_step(ranks, rank, 0).send_chunk;
      for (std::size_t k = 0; k < segments(first); ++k) send(piece(first, k), kAllGatherTag);  // to right
    }
    for (int s = 0; s < ranks - 1; ++s) {
      const RingStep step = all_gather_step(ranks, rank, s);
      for (std::size_t k = 0; k < segments(step.recv_chunk); ++k) {
        std::span<T> mine = piece(step.recv_chunk, k);
        recv(mine, kAllGatherTag);                                // a finished segment, from left
        if (s < ranks - 2) send(mine, kAllGatherTag);             // forwarded to right
      }
    }
  }

  Transport& transport;
  const int ranks;
  const int rank;
  const int left;   // receives come from here
  const int right;  // sends go here
  const std::span<T> data;
  const std::size_t segment;  // elements per message
};

}  // namespace

ChunkRange ring_chunk(std::size_t n, int ranks, int index) {
  TROUPE_CHECK(ranks >= 1 && index >= 0 && index < ranks, "chunk ", index, " of ", ranks);
  const auto parts = static_cast<std::size_t>(ranks);
  const auto i = static_cast<std::size_t>(index);
  const std::size_t base = n / parts;
  const std::size_t extra = n % parts;  // the first `extra` chunks get one more element
  return ChunkRange{i * base + std::min(i, extra), base + (i < extra ? 1 : 0)};
}

std::size_t ring_segment_count(std::size_t length, std::size_t segment_elems) {
  TROUPE_CHECK(segment_elems > 0, "segment of 0 elements");
  return (length + segment_elems - 1) / segment_elems;
}

ChunkRange ring_segment(ChunkRange chunk, std::size_t segment_elems, std::size_t k) {
  TROUPE_CHECK(k < ring_segment_count(chunk.length, segment_elems), "segment ", k, " of a ", chunk.length,
               "-element chunk at ", segment_elems, " per segment");
  const std::size_t begin = k * segment_elems;
  return ChunkRange{chunk.offset + begin, std::min(segment_elems, chunk.length - begin)};
}

RingStep reduce_scatter_step(int ranks, int rank, int step) {
  TROUPE_CHECK(ranks >= 1 && rank >= 0 && rank < ranks && step >= 0 && step < ranks - 1,
               "ranks ", ranks, " rank ", rank, " step ", step);
  return RingStep{mod(rank + 1, ranks), mod(rank - step, ranks), mod(rank - 1, ranks), mod(rank - step - 1, ranks)};
}

RingStep all_gather_step(int ranks, int rank, int step) {
  TROUPE_CHECK(ranks >= 1 && rank >= 0 && rank < ranks && step >= 0 && step < ranks - 1,
               "ranks ", ranks, " rank ", rank, " step ", step);
  return RingStep{mod(rank + 1, ranks), mod(rank + 1 - step, ranks), mod(rank - 1, ranks), mod(rank - step, ranks)};
}

int ring_owned_chunk(int ranks, int rank) {
  TROUPE_CHECK(ranks >= 1 && rank >= 0 && rank < ranks, "rank ", rank, " of ", ranks);
  return mod(rank + 1, ranks);
}

template <class T>
void reduce_scatter_ring(Transport& transport, std::span<T> data, RingOptions options) {
  Ring<T>(transport, data, options).reduce_scatter(false);
}

template <class T>
void all_gather_ring(Transport& transport, std::span<T> data, RingOptions options) {
  Ring<T>(transport, data, options).all_gather(false);
}

template <class T>
void allreduce_ring(Transport& transport, std::span<T> data, RingOptions options) {
  Ring<T> ring(transport, data, options);
  ring.reduce_scatter(true);  // its last step already starts the all-gather
  ring.all_gather(true);
}

template <class T>
void broadcast(Transport& transport, std::span<T> data, int root, RingOptions options) {
  Ring<T> ring(transport, data, options);
  TROUPE_CHECK(root >= 0 && root < ring.ranks, "broadcast root ", root, " of ", ring.ranks);
  const bool forwards = ring.right != root;  // the rank just before the root ends the chain
  for (int c = 0; c < ring.ranks; ++c) {
    for (std::size_t k = 0; k < ring.segments(c); ++k) {
      std::span<T> piece = ring.piece(c, k);
      if (ring.rank != root) ring.recv(piece, kBroadcastTag);  // from ring.left, the previous link
      if (forwards) ring.send(piece, kBroadcastTag);           // to ring.right, the next link
    }
  }
}

#define TROUPE_RING_INSTANTIATE(T)                                                \
  template void allreduce_ring<T>(Transport&, std::span<T>, RingOptions);         \
  template void reduce_scatter_ring<T>(Transport&, std::span<T>, RingOptions);    \
  template void all_gather_ring<T>(Transport&, std::span<T>, RingOptions);        \
  template void broadcast<T>(Transport&, std::span<T>, int, RingOptions);
TROUPE_RING_INSTANTIATE(float)
TROUPE_RING_INSTANTIATE(double)
TROUPE_RING_INSTANTIATE(std::int64_t)
TROUPE_RING_INSTANTIATE(__int128)
#undef TROUPE_RING_INSTANTIATE

}  // namespace troupe::comm
