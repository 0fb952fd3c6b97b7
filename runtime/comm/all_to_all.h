// Owns all-to-all personalised exchange (equal blocks, and variable-size blocks), generic over the element type.
//
// n = ranks. Rank r's send buffer holds one block per destination, in rank order; its receive buffer
// gets one block per source, in rank order: recv block s of rank r = send block r of rank s.
//
//   all_to_all     1 round: at round step i (1 .. n - 1) rank r sends block (r + i) mod n to rank
//                  (r + i) mod n, and then receives from (r - i) mod n, so the n - 1 peers are
//                  addressed in a staggered order (no rank is everyone's first target). Its own block is
//                  copied locally. Every send is queued before the first receive (Transport::send does
//                  not wait), so the pattern cannot deadlock. Bytes sent per rank: (n - 1)/n · B for a
//                  send buffer of B bytes; n - 1 messages.
//   all_to_all_v   the same with per-peer counts: rank r sends send_counts[s] elements to rank s (blocks
//                  laid out back to back in rank order) and receives recv_counts[s] from rank s. Every
//                  rank's recv_counts[s] must equal rank s's send_counts[r]; a mismatch is reported by the
//                  receiver as a size error naming the peer. Empty blocks send no message.
//
// Data is only copied, never combined, so the result is exact and deterministic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "runtime/comm/transport.h"

namespace troupe::comm {

inline constexpr std::uint32_t kAllToAllTag = 0x7272'0031;

// send.size() == recv.size() == size() · block for some block (an Error kUsage otherwise); send and recv
// must not overlap. T: float, double, std::int64_t, __int128.
template <class T>
void all_to_all(Transport& transport, std::span<const T> send, std::span<T> recv);

// send.size() == sum(send_counts), recv.size() == sum(recv_counts), both count lists of size() entries.
template <class T>
void all_to_all_v(Transport& transport, std::span<const T> send, std::span<const std::size_t> send_counts,
                  std::span<T> recv, std::span<const std::size_t> recv_counts);

}  // namespace troupe::comm
