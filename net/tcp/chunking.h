// Owns how the TCP transport cuts a message into frames: a pure function, tested on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace troupe::net::tcp {

// A sanity bound on the size a chunk header may announce (1 TiB), checked before a receiver
// allocates for it.
inline constexpr std::uint64_t kMaxMessageBytes = std::uint64_t{1} << 40;

struct ChunkRange {
  std::size_t offset = 0;
  std::size_t length = 0;
  bool operator==(const ChunkRange&) const = default;
};

// The frames of a `total`-byte message, in order, each at most `chunk_bytes` (a multiple of 8):
//  * an empty message is one empty chunk;
//  * a small message (under 64 KiB and at most chunk_bytes) is one chunk;
//  * otherwise chunks of chunk_bytes over the largest multiple of 8, then the last 1..7 bytes as a
//    chunk of their own. Every chunk but that tail is then a whole number of 8-byte words, which is
//    what lets the receiver read it straight into place (net/wire/frame_codec.h).
std::vector<ChunkRange> chunk_ranges(std::size_t total, std::size_t chunk_bytes);

}  // namespace troupe::net::tcp
