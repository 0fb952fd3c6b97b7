// Owns QuantizedCompressor: validate, run the compressed ring, report bytes.
#include "runtime/comm/compression/quantized_compressor.h"

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::comm {

QuantizedCompressor::QuantizedCompressor(std::unique_ptr<BlockCodec> codec, std::string name, bool error_feedback)
    : codec_(std::move(codec)), name_(std::move(name)), error_feedback_(error_feedback) {}

CompressStats QuantizedCompressor::allreduce(Transport& transport, std::span<float> grad,
                                             std::span<const BucketParam> layout) {
  validate_layout(layout, grad.size(), name_);
  if (error_feedback_ && !sized_) {
    feedback_.assign(grad.size(), 0.0f);
    sized_ = true;
  } else if (error_feedback_ && feedback_.size() != grad.size()) {
    throw Error(ErrorKind::kShape,
                fmt::format("compressor {} holds the error feedback of a bucket of {} floats but was called with {}: "
                            "make one compressor per bucket",
                            name_, feedback_.size(), grad.size()));
  }
  CompressStats stats;
  if (grad.empty()) return stats;  // every rank has the same (empty) bucket: nothing to exchange
  stats.bytes_uncompressed = ring_allreduce_bytes(grad.size(), transport.size(), transport.rank());
  stats.bytes_sent = compressed_allreduce_ring(transport, grad, *codec_, scratch_, feedback_);
  return stats;
}

}  // namespace troupe::comm
