// Owns chunk_ranges.
#include "net/tcp/chunking.h"

#include <algorithm>

#include "runtime/error.h"

namespace troupe::net::tcp {

std::vector<ChunkRange> chunk_ranges(std::size_t total, std::size_t chunk_bytes) {
  TROUPE_CHECK(chunk_bytes >= 8 && chunk_bytes % 8 == 0, "chunk_bytes = ", chunk_bytes);
  if (total == 0) return {ChunkRange{0, 0}};
  if (total < 64 * 1024 && total <= chunk_bytes) return {ChunkRange{0, total}};
  std::vector<ChunkRange> out;
  const std::size_t body = total - total % 8;
  for (std::size_t at = 0; at < body; at += chunk_bytes) out.push_back({at, std::min(chunk_bytes, body - at)});
  if (body < total) out.push_back({body, total - body});
  return out;
}

}  // namespace troupe::net::tcp
