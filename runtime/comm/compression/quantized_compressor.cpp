// Owns QuantizedCompressor: validate, run the compressed ring, report bytes.
#include "runtime/comm/compression/quantized_compressor.h"

namespace troupe::comm {

QuantizedCompressor::QuantizedCompressor(std::unique_ptr<BlockCodec> codec, std::string name)
    : codec_(std::move(codec)), name_(std::move(name)) {}

CompressStats QuantizedCompressor::allreduce(Transport& transport, std::span<float> grad,
                                             std::span<const BucketParam> layout) {
  validate_layout(layout, grad.size(), name_);
  CompressStats stats;
  if (grad.empty()) return stats;  // every rank has the same (empty) bucket: nothing to exchange
  stats.bytes_uncompressed = ring_allreduce_bytes(grad.size(), transport.size(), transport.rank());
  stats.bytes_sent = compressed_allreduce_ring(transport, grad, *codec_, scratch_);
  return stats;
}

}  // namespace troupe::comm
