// Owns the ring collectives' step loops over a Transport and the chunk/step arithmetic they share.
#include "runtime/comm/ring.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "runtime/error.h"

namespace troupe::comm {

namespace {

int mod(int a, int n) { return ((a % n) + n) % n; }

// a + b; integers wrap (added as unsigned, so overflow is defined and the sum is associative).
template <class T>
inline T add(T a, T b) {
  if constexpr (std::is_same_v<T, __int128>) {
    return static_cast<__int128>(static_cast<unsigned __int128>(a) + static_cast<unsigned __int128>(b));
  } else if constexpr (std::is_same_v<T, std::int64_t>) {
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b));
  } else {
    return a + b;
  }
}

// The ring as one rank sees it, set up once before the step loop (gloo's constructor).
struct Ring {
  explicit Ring(Transport& t, std::size_t n)
      : transport(t), ranks(t.size()), rank(t.rank()), left(mod(rank - 1, ranks)), right(mod(rank + 1, ranks)), n(n) {
    TROUPE_CHECK(ranks >= 1 && rank >= 0 && rank < ranks, "rank ", rank, " of ", ranks);
  }

  template <class T>
  std::span<T> chunk(std::span<T> data, int index) const {
    const ChunkRange c = ring_chunk(n, ranks, index);
    return data.subspan(c.offset, c.length);
  }
  template <class T>
  void send(std::span<T> buf, std::uint32_t tag) { transport.send(right, tag, std::as_bytes(buf)); }
  template <class T>
  void recv(std::span<T> buf, std::uint32_t tag) { transport.recv(left, tag, std::as_writable_bytes(buf)); }

  Transport& transport;
  const int ranks;
  const int rank;
  const int left;   // receives come from here
  const int right;  // sends go here
  const std::size_t n;
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
void reduce_scatter_ring(Transport& transport, std::span<T> data) {
  Ring ring(transport, data.size());
  // Incoming partial sums land here before being added; sized for the longest chunk (chunk 0).
  std::vector<T> inbox(ring_chunk(data.size(), ring.ranks, 0).length);
  for (int s = 0; s < ring.ranks - 1; ++s) {
    const RingStep step = reduce_scatter_step(ring.ranks, ring.rank, s);
    std::span<T> out = ring.chunk(data, step.send_chunk);  // partial sum, to ring.right
    std::span<T> mine = ring.chunk(data, step.recv_chunk);  // our copy of the chunk ring.left sends
    std::span<T> in(inbox.data(), mine.size());              // from ring.left
    ring.send(out, kReduceScatterTag);
    ring.recv(in, kReduceScatterTag);
    // incoming (the sum so far along the ring) + ours: the same order on every rank for this chunk.
    for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = add(in[i], mine[i]);
  }
}

template <class T>
void all_gather_ring(Transport& transport, std::span<T> data) {
  Ring ring(transport, data.size());
  for (int s = 0; s < ring.ranks - 1; ++s) {
    const RingStep step = all_gather_step(ring.ranks, ring.rank, s);
    ring.send(ring.chunk(data, step.send_chunk), kAllGatherTag);  // a finished chunk, to ring.right
    ring.recv(ring.chunk(data, step.recv_chunk), kAllGatherTag);  // a finished chunk, from ring.left
  }
}

template <class T>
void allreduce_ring(Transport& transport, std::span<T> data) {
  reduce_scatter_ring<T>(transport, data);
  all_gather_ring<T>(transport, data);
}

template <class T>
void broadcast(Transport& transport, std::span<T> data, int root) {
  Ring ring(transport, data.size());
  TROUPE_CHECK(root >= 0 && root < ring.ranks, "broadcast root ", root, " of ", ring.ranks);
  const bool forwards = ring.right != root;  // the rank just before the root ends the chain
  for (int c = 0; c < ring.ranks; ++c) {
    std::span<T> chunk = ring.chunk(data, c);
    if (ring.rank != root) ring.recv(chunk, kBroadcastTag);  // from ring.left, the previous link
    if (forwards) ring.send(chunk, kBroadcastTag);  // to ring.right, the next link
  }
}

#define TROUPE_RING_INSTANTIATE(T)                                    \
  template void allreduce_ring<T>(Transport&, std::span<T>);          \
  template void reduce_scatter_ring<T>(Transport&, std::span<T>);     \
  template void all_gather_ring<T>(Transport&, std::span<T>);         \
  template void broadcast<T>(Transport&, std::span<T>, int);
TROUPE_RING_INSTANTIATE(float)
TROUPE_RING_INSTANTIATE(double)
TROUPE_RING_INSTANTIATE(std::int64_t)
TROUPE_RING_INSTANTIATE(__int128)
#undef TROUPE_RING_INSTANTIATE

}  // namespace troupe::comm
