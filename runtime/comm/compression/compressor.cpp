// Owns make_compressor (spec → compressor) and the bucket-layout check shared by every compressor.
#include "runtime/comm/compression/compressor.h"

#include <fmt/format.h>

#include "runtime/comm/compression/powersgd_compressor.h"
#include "runtime/comm/compression/quantized_compressor.h"
#include "runtime/comm/compression/topk_compressor.h"
#include "runtime/error.h"

namespace troupe::comm {

std::unique_ptr<GradientCompressor> make_compressor(std::string_view spec) {
  return make_compressor(parse_compression_spec(spec));
}

std::unique_ptr<GradientCompressor> make_compressor(const CompressionSpec& spec) {
  switch (spec.kind) {
    case CompressionKind::kNone: return std::make_unique<QuantizedCompressor>(make_f32_codec(), spec.text, false);
    case CompressionKind::kFp16: return std::make_unique<QuantizedCompressor>(make_fp16_codec(), spec.text, true);
    case CompressionKind::kBf16: return std::make_unique<QuantizedCompressor>(make_bf16_codec(), spec.text, true);
    case CompressionKind::kInt8: return std::make_unique<QuantizedCompressor>(make_int8_codec(), spec.text, true);
    case CompressionKind::kTopK: return std::make_unique<TopKCompressor>(spec.fraction, spec.text);
    case CompressionKind::kPowerSgd: return std::make_unique<PowerSgdCompressor>(spec.rank, spec.text);
  }
  TROUPE_CHECK(false, "compression kind ", static_cast<int>(spec.kind));
  return nullptr;
}

void validate_layout(std::span<const BucketParam> layout, std::size_t n, std::string_view who) {
  std::size_t end = 0;
  for (std::size_t i = 0; i < layout.size(); ++i) {
    const BucketParam& p = layout[i];
    const std::size_t size = p.rows * p.cols;
    if (p.offset < end || p.offset > n || size > n - p.offset)
      throw Error(ErrorKind::kShape,
                  fmt::format("compressor {}: bucket layout entry {} (offset {}, {} x {}) {} a bucket of {} floats; "
                              "entries must be sorted by offset, not overlap and lie inside the bucket",
                              who, i, p.offset, p.rows, p.cols, p.offset < end ? "overlaps the previous entry in" : "does not fit",
                              n));
    end = p.offset + size;
  }
}

}  // namespace troupe::comm
