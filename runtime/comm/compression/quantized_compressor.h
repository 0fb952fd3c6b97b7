// Owns the compressors without state across steps — none (float32), fp16, bf16, int8 — each a compressed ring allreduce with its BlockCodec.
#pragma once

#include <memory>
#include <string>

#include "runtime/comm/compression/compressed_ring.h"
#include "runtime/comm/compression/compressor.h"

namespace troupe::comm {

// Sums a bucket with compressed_allreduce_ring (compressed_ring.h): bytes sent per rank
// ≈ 2(n − 1)/n · E(N), every element rounded by the codec n times (no error feedback: these codecs'
// errors are small and unbiased enough that SGD does not need it).
class QuantizedCompressor final : public GradientCompressor {
 public:
  QuantizedCompressor(std::unique_ptr<BlockCodec> codec, std::string name);
  CompressStats allreduce(Transport& transport, std::span<float> grad, std::span<const BucketParam> layout) override;
  std::string_view name() const override { return name_; }

 private:
  std::unique_ptr<BlockCodec> codec_;
  std::string name_;
  RingScratch scratch_;
};

}  // namespace troupe::comm
