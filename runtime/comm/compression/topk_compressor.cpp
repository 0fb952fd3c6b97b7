// Owns TopKCompressor's step: error-feedback selection, (index, value) all-gather, rank-ordered sum.
#include "runtime/comm/compression/topk_compressor.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "runtime/comm/compression/compressed_ring.h"
#include "runtime/error.h"

namespace troupe::comm {

TopKCompressor::TopKCompressor(double fraction, std::string name) : fraction_(fraction), name_(std::move(name)) {
  TROUPE_CHECK(fraction > 0.0 && fraction <= 1.0, "fraction ", fraction);
}

CompressStats TopKCompressor::allreduce(Transport& transport, std::span<float> grad, std::span<const BucketParam> layout) {
  validate_layout(layout, grad.size(), name_);
  if (!sized_) {
    residual_.assign(grad.size(), 0.0f);
    sized_ = true;
  } else if (residual_.size() != grad.size()) {
    throw Error(ErrorKind::kShape,
                fmt::format("compressor {} holds the error feedback of a bucket of {} floats but was called with {}: "
                            "make one compressor per bucket",
                            name_, residual_.size(), grad.size()));
  }
  CompressStats stats;
  if (grad.empty()) return stats;
  const int n = transport.size();
  stats.bytes_uncompressed = ring_allreduce_bytes(grad.size(), n, transport.rank());

  const std::size_t k = topk_count(grad.size(), fraction_);
  topk_with_feedback(grad, residual_, k, scratch_, sent_);

  // Blob layout: k indices (u32) then k values (f32).
  const std::size_t blob = 8 * k;
  blobs_.resize(blob * static_cast<std::size_t>(n));
  std::byte* mine = blobs_.data() + blob * static_cast<std::size_t>(transport.rank());
  std::memcpy(mine, sent_.indices.data(), 4 * k);
  std::memcpy(mine + 4 * k, sent_.values.data(), 4 * k);
  stats.bytes_sent = allgather_ring_bytes(transport, blobs_, blob);

  std::fill(grad.begin(), grad.end(), 0.0f);
  indices_.resize(k);
  values_.resize(k);
  for (int r = 0; r < n; ++r) {  // rank order: the same additions on every rank
    const std::byte* theirs = blobs_.data() + blob * static_cast<std::size_t>(r);
    std::memcpy(indices_.data(), theirs, 4 * k);
    std::memcpy(values_.data(), theirs + 4 * k, 4 * k);
    for (std::size_t j = 0; j < k; ++j) {
      if (indices_[j] >= grad.size())
        throw Error(ErrorKind::kIo, fmt::format("compressor {}: rank {} sent index {} for a bucket of {} floats: corrupt "
                                                "message or a rank with another bucket layout",
                                                name_, r, indices_[j], grad.size()));
      grad[indices_[j]] += values_[j];
    }
  }
  return stats;
}

}  // namespace troupe::comm
