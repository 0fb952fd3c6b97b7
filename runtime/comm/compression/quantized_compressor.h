// Owns the compressors without state across steps — none (float32), fp16, bf16, int8 — each a compressed ring allreduce with its BlockCodec.
#pragma once

#include <memory>
#include <string>

#include "runtime/comm/compression/compressed_ring.h"
#include "runtime/comm/compression/compressor.h"

namespace troupe::comm {

// Sums a bucket with compressed_allreduce_ring (compressed_ring.h): bytes sent per rank
// ≈ 2(n − 1)/n · E(N), every element rounded by the codec n times. With error feedback (the lossy
// codecs: fp16, bf16, int8), what each rank's encodings lost is added to its next step's gradient, so
// rounding does not accumulate into a bias over steps (a gradient entry below int8's step size
// still arrives, a few steps later). The feedback ties the compressor to one bucket length.
class QuantizedCompressor final : public GradientCompressor {
 public:
  QuantizedCompressor(std::unique_ptr<BlockCodec> codec, std::string name, bool error_feedback);
  CompressStats allreduce(Transport& transport, std::span<float> grad, std::span<const BucketParam> layout) override;
  std::string_view name() const override { return name_; }

  // This rank's error feedback (empty without it, or before the first call).
  std::span<const float> residual() const { return feedback_; }

 private:
  std::unique_ptr<BlockCodec> codec_;
  std::string name_;
  RingScratch scratch_;
  bool error_feedback_;
  bool sized_ = false;
  std::vector<float> feedback_;
};

}  // namespace troupe::comm
