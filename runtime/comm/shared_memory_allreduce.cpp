// Owns the shared-memory allreduce's step loop (stage, reduce in the ring's order, copy out) and its piece/part arithmetic.
#include "runtime/comm/shared_memory_allreduce.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "runtime/comm/elementwise.h"
#include "runtime/error.h"

namespace troupe::comm {

std::size_t shared_piece_count(std::size_t n, std::size_t piece_elems) {
  TROUPE_CHECK(piece_elems > 0, "piece of 0 elements");
  return (n + piece_elems - 1) / piece_elems;
}

ChunkRange shared_piece(std::size_t n, std::size_t piece_elems, std::size_t k) {
  TROUPE_CHECK(k < shared_piece_count(n, piece_elems), "piece ", k, " of a ", n, "-element buffer at ", piece_elems,
               " per piece");
  const std::size_t offset = k * piece_elems;
  return ChunkRange{offset, std::min(piece_elems, n - offset)};
}

ChunkRange shared_reduce_part(ChunkRange piece, int ranks, int rank) {
  const ChunkRange part = ring_chunk(piece.length, ranks, rank);
  return ChunkRange{piece.offset + part.offset, part.length};
}

int ring_chunk_of(std::size_t n, int ranks, std::size_t index) {
  TROUPE_CHECK(ranks >= 1 && index < n, "element ", index, " of ", n, " over ", ranks, " ranks");
  const auto parts = static_cast<std::size_t>(ranks);
  const std::size_t base = n / parts;
  const std::size_t extra = n % parts;  // chunks 0..extra-1 hold base + 1 elements (ring_chunk)
  const std::size_t long_part = extra * (base + 1);
  if (index < long_part) return static_cast<int>(index / (base + 1));
  return static_cast<int>(extra + (index - long_part) / base);
}

namespace {

// dst[i] = ((sources[0][i] + sources[1][i]) + sources[2][i]) + … for i < n, each addition `partial +
// next` as the ring adds, written to both dst and copy. Blocked so the partial sums stay in L1 while
// the sources stream past; dst may alias any source (it is written only after the block's sum is complete).
template <class T>
void sum_in_order(T* dst, T* copy, const T* const* sources, int count, std::size_t n) {
  constexpr std::size_t kBlock = 8192 / sizeof(T) < 512 ? 512 : 8192 / sizeof(T);
  std::array<T, kBlock> partial;
  for (std::size_t at = 0; at < n; at += kBlock) {
    const std::size_t m = std::min(kBlock, n - at);
    add_into(partial.data(), sources[0] + at, sources[1] + at, m);
    for (int j = 2; j < count; ++j) add_into(partial.data(), partial.data(), sources[j] + at, m);
    std::memcpy(dst + at, partial.data(), m * sizeof(T));
    std::memcpy(copy + at, partial.data(), m * sizeof(T));
  }
}

// One rank's view of one allreduce, set up before the step loop.
template <class T>
struct SharedAllreduce {
  SharedAllreduce(SharedWindow& w, std::span<T> d)
      : window(w),
        ranks(w.size()),
        rank(w.rank()),
        data(d),
        piece_elems(w.piece_bytes() / sizeof(T)),
        pieces(shared_piece_count(d.size(), piece_elems)),
        first(w.published(w.rank(), kStagedCounter)) {
    TROUPE_CHECK(w.pieces() >= 2 && piece_elems > 0, "a shared window of ", w.pieces(), " pieces of ", w.piece_bytes(),
                 " bytes");
  }

  std::uint64_t global(std::size_t k) const { return first + k; }
  std::size_t slot(std::size_t k) const { return static_cast<std::size_t>(global(k) % window.pieces()); }
  T* staged(int owner, std::size_t k) const { return reinterpret_cast<T*>(window.staging(owner, slot(k))); }

  void stage(std::size_t k) {
    const std::uint64_t g = global(k);
    // The slot last held piece g - P: every rank must have copied it out.
    if (g >= window.pieces()) window.wait_for(-1, kCopiedOutCounter, g - window.pieces() + 1, "allreduce");
    const ChunkRange piece = shared_piece(data.size(), piece_elems, k);
    // Not this rank's own part: only this rank reduces it, straight from `data`.
    const ChunkRange own = shared_reduce_part(piece, ranks, rank);
    std::memcpy(staged(rank, k), data.data() + piece.offset, (own.offset - piece.offset) * sizeof(T));
    const std::size_t after = own.offset + own.length;
    std::memcpy(staged(rank, k) + (after - piece.offset), data.data() + after, (piece.offset + piece.length - after) * sizeof(T));
    window.publish(kStagedCounter, g + 1);
  }

  void reduce(std::size_t k) {
    const std::uint64_t g = global(k);
    window.wait_for(-1, kStagedCounter, g + 1, "allreduce");
    const ChunkRange piece = shared_piece(data.size(), piece_elems, k);
    const ChunkRange part = shared_reduce_part(piece, ranks, rank);
    // Split where the ring's chunks of the whole buffer change: each run starts its sum elsewhere.
    for (std::size_t at = part.offset; at < part.offset + part.length;) {
      const int c = ring_chunk_of(data.size(), ranks, at);
      const ChunkRange chunk = ring_chunk(data.size(), ranks, c);
      const std::size_t end = std::min(part.offset + part.length, chunk.offset + chunk.length);
      const std::size_t local = at - piece.offset;
      for (int j = 0; j < ranks; ++j) {
        const int q = (c + j) % ranks;
        sources[static_cast<std::size_t>(j)] = q == rank ? data.data() + at : staged(q, k) + local;
      }
      // Into `data` (this rank's result) and the staging slot (where the peers copy it from).
      sum_in_order(data.data() + at, staged(rank, k) + local, sources.data(), ranks, end - at);
      at = end;
    }
    window.publish(kReducedCounter, g + 1);
  }

  void copy_out(std::size_t k) {
    const std::uint64_t g = global(k);
    const ChunkRange piece = shared_piece(data.size(), piece_elems, k);
    for (int i = 1; i < ranks; ++i) {  // this rank's own part is in `data` already (reduce)
      const int q = (rank + i) % ranks;
      window.wait_for(q, kReducedCounter, g + 1, "allreduce");
      const ChunkRange part = shared_reduce_part(piece, ranks, q);
      std::memcpy(data.data() + part.offset, staged(q, k) + (part.offset - piece.offset), part.length * sizeof(T));
    }
    window.publish(kCopiedOutCounter, g + 1);
  }

  void run() {
    // Copy out k - 2, reduce k - 1, stage k: each step waits only on steps peers took earlier, so
    // two slots suffice to make progress and more let a rank run ahead.
    for (std::size_t k = 0; k < pieces + 2; ++k) {
      if (k >= 2) copy_out(k - 2);
      if (k >= 1 && k - 1 < pieces) reduce(k - 1);
      if (k < pieces) stage(k);
    }
  }

  SharedWindow& window;
  const int ranks;
  const int rank;
  const std::span<T> data;
  const std::size_t piece_elems;
  const std::size_t pieces;   // of this buffer
  const std::uint64_t first;  // the window's piece number of this buffer's piece 0
  std::vector<const T*> sources = std::vector<const T*>(static_cast<std::size_t>(ranks));  // reduce's, in the ring's order
};

}  // namespace

template <class T>
void allreduce_shared_memory(SharedWindow& window, std::span<T> data) {
  static_assert(kCollectiveType<T>);
  if (window.size() == 1 || data.empty()) return;
  SharedAllreduce<T>(window, data).run();
}

template void allreduce_shared_memory<float>(SharedWindow&, std::span<float>);
template void allreduce_shared_memory<double>(SharedWindow&, std::span<double>);
template void allreduce_shared_memory<std::int64_t>(SharedWindow&, std::span<std::int64_t>);
template void allreduce_shared_memory<__int128>(SharedWindow&, std::span<__int128>);

}  // namespace troupe::comm
