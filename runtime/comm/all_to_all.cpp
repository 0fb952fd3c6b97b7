// Owns the all-to-all exchange loops.
#include "runtime/comm/all_to_all.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::comm {

namespace {

int mod(int a, int n) { return ((a % n) + n) % n; }

std::vector<std::size_t> offsets_of(std::span<const std::size_t> counts) {
  std::vector<std::size_t> offsets(counts.size() + 1, 0);
  std::partial_sum(counts.begin(), counts.end(), offsets.begin() + 1);
  return offsets;
}

}  // namespace

template <class T>
void all_to_all_v(Transport& transport, std::span<const T> send, std::span<const std::size_t> send_counts,
                  std::span<T> recv, std::span<const std::size_t> recv_counts) {
  const int n = transport.size(), me = transport.rank();
  const auto ranks = static_cast<std::size_t>(n);
  if (send_counts.size() != ranks || recv_counts.size() != ranks)
    throw Error(ErrorKind::kUsage, fmt::format("all_to_all_v on rank {}: {} send and {} receive counts for {} ranks; "
                                               "give one count per rank", me, send_counts.size(), recv_counts.size(), n));
  const std::vector<std::size_t> so = offsets_of(send_counts), ro = offsets_of(recv_counts);
  if (so.back() != send.size() || ro.back() != recv.size())
    throw Error(ErrorKind::kUsage, fmt::format("all_to_all_v on rank {}: counts add up to {} to send and {} to receive, "
                                               "but the buffers hold {} and {}", me, so.back(), ro.back(), send.size(),
                                               recv.size()));
  const auto block = [](auto buf, const std::vector<std::size_t>& off, int r) {
    return buf.subspan(off[static_cast<std::size_t>(r)], off[static_cast<std::size_t>(r) + 1] - off[static_cast<std::size_t>(r)]);
  };
  for (int i = 1; i < n; ++i) {  // to (me + i) mod n: its block
    const int to = mod(me + i, n);
    std::span<const T> out = block(send, so, to);
    if (!out.empty()) transport.send(to, kAllToAllTag, std::as_bytes(out));
  }
  std::span<const T> own = block(send, so, me);
  std::span<T> own_in = block(recv, ro, me);
  if (own.size() != own_in.size())
    throw Error(ErrorKind::kUsage, fmt::format("all_to_all_v on rank {}: sends {} elements to itself but expects {}",
                                               me, own.size(), own_in.size()));
  std::copy(own.begin(), own.end(), own_in.begin());
  for (int i = 1; i < n; ++i) {  // from (me - i) mod n: my block of its buffer
    const int from = mod(me - i, n);
    std::span<T> in = block(recv, ro, from);
    if (!in.empty()) transport.recv(from, kAllToAllTag, std::as_writable_bytes(in));
  }
}

template <class T>
void all_to_all(Transport& transport, std::span<const T> send, std::span<T> recv) {
  const auto ranks = static_cast<std::size_t>(transport.size());
  if (send.size() != recv.size() || send.size() % ranks != 0)
    throw Error(ErrorKind::kUsage, fmt::format("all_to_all on rank {}: send holds {} and receive {} elements; both "
                                               "must be the same multiple of the {} ranks", transport.rank(),
                                               send.size(), recv.size(), ranks));
  const std::vector<std::size_t> counts(ranks, send.size() / ranks);
  all_to_all_v<T>(transport, send, counts, recv, counts);
}

#define TROUPE_ALL_TO_ALL_INSTANTIATE(T)                                                                  \
  template void all_to_all<T>(Transport&, std::span<const T>, std::span<T>);                              \
  template void all_to_all_v<T>(Transport&, std::span<const T>, std::span<const std::size_t>, std::span<T>, \
                                std::span<const std::size_t>);
TROUPE_ALL_TO_ALL_INSTANTIATE(float)
TROUPE_ALL_TO_ALL_INSTANTIATE(double)
TROUPE_ALL_TO_ALL_INSTANTIATE(std::int64_t)
TROUPE_ALL_TO_ALL_INSTANTIATE(__int128)
#undef TROUPE_ALL_TO_ALL_INSTANTIATE

}  // namespace troupe::comm
