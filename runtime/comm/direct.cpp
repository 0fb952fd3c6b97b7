// Direct reduce-scatter and all-gather: one round of sends to every peer, sums in rank order.
#include "runtime/comm/direct.h"

#include <cstring>

#include "runtime/error.h"
#include "runtime/exact_sum.h"

namespace troupe::comm {

namespace {

template <class T>
std::span<const std::byte> bytes_of(std::span<const T> s) {
  return std::as_bytes(s);
}

template <class T>
T add(T a, T b) {
  if constexpr (std::is_same_v<T, ExactSum>) return exact_add(a, b);
  else return a + b;
}

void check_ranges(const Transport& t, std::size_t n, const std::vector<ChunkRange>& ranges) {
  TROUPE_CHECK(static_cast<int>(ranges.size()) == t.size(), ranges.size(), " ranges for ", t.size(), " ranks");
  for (const ChunkRange& r : ranges) TROUPE_CHECK(r.offset + r.length <= n, "range past the buffer end");
}

}  // namespace

std::vector<ChunkRange> equal_ranges(std::size_t n, int ranks) {
  std::vector<ChunkRange> out;
  for (int r = 0; r < ranks; ++r) out.push_back(ring_chunk(n, ranks, r));
  return out;
}

template <class T>
void reduce_scatter_direct(Transport& transport, std::span<T> data, const std::vector<ChunkRange>& ranges) {
  const int n = transport.size(), me = transport.rank();
  check_ranges(transport, data.size(), ranges);
  for (int o = 0; o < n; ++o)  // to o: my contribution to o's range
    if (o != me && ranges[o].length)
      transport.send(o, kDirectReduceTag, bytes_of<T>(data.subspan(ranges[o].offset, ranges[o].length)));
  const ChunkRange mine = ranges[me];
  if (mine.length == 0 || n == 1) return;
  std::vector<T> sum(mine.length), incoming(mine.length);
  std::span<T> own = data.subspan(mine.offset, mine.length);
  bool started = false;
  for (int r = 0; r < n; ++r) {  // from r: r's contribution to my range, added in rank order
    const T* src = own.data();
    if (r != me) {
      transport.recv(r, kDirectReduceTag, std::as_writable_bytes(std::span<T>(incoming)));
      src = incoming.data();
    }
    if (!started) std::memcpy(sum.data(), src, mine.length * sizeof(T));
    else
      for (std::size_t i = 0; i < mine.length; ++i) sum[i] = add(sum[i], src[i]);
    started = true;
  }
  std::memcpy(own.data(), sum.data(), mine.length * sizeof(T));
}

template <class T>
void all_gather_direct(Transport& transport, std::span<T> data, const std::vector<ChunkRange>& ranges) {
  const int n = transport.size(), me = transport.rank();
  check_ranges(transport, data.size(), ranges);
  const ChunkRange mine = ranges[me];
  for (int o = 0; o < n; ++o)  // to o: my range
    if (o != me && mine.length)
      transport.send(o, kDirectGatherTag, bytes_of<T>(data.subspan(mine.offset, mine.length)));
  for (int r = 0; r < n; ++r)  // from r: r's range
    if (r != me && ranges[r].length)
      transport.recv(r, kDirectGatherTag, std::as_writable_bytes(data.subspan(ranges[r].offset, ranges[r].length)));
}

template void reduce_scatter_direct<float>(Transport&, std::span<float>, const std::vector<ChunkRange>&);
template void reduce_scatter_direct<double>(Transport&, std::span<double>, const std::vector<ChunkRange>&);
template void reduce_scatter_direct<ExactSum>(Transport&, std::span<ExactSum>, const std::vector<ChunkRange>&);
template void all_gather_direct<float>(Transport&, std::span<float>, const std::vector<ChunkRange>&);
template void all_gather_direct<double>(Transport&, std::span<double>, const std::vector<ChunkRange>&);
template void all_gather_direct<ExactSum>(Transport&, std::span<ExactSum>, const std::vector<ChunkRange>&);

}  // namespace troupe::comm
