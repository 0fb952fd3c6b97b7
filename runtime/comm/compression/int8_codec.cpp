// Owns the int8 quantize/dequantize loops (per-chunk max-abs scales).
#include "runtime/comm/compression/int8_codec.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/error.h"

namespace troupe::comm {

void quantize_int8(std::span<const float> in, std::span<float> scales, std::span<std::int8_t> q) {
  TROUPE_CHECK(q.size() == in.size() && scales.size() == int8_scale_count(in.size()), in.size(), " values, ",
               q.size(), " codes, ", scales.size(), " scales");
  for (std::size_t c = 0; c < scales.size(); ++c) {
    const std::size_t begin = c * kInt8Chunk;
    const std::size_t end = std::min(in.size(), begin + kInt8Chunk);
    float max = 0.0f;
    bool nan = false;
    for (std::size_t i = begin; i < end; ++i) {
      max = std::max(max, std::fabs(in[i]));
      nan |= std::isnan(in[i]);
    }
    if (nan || std::isinf(max)) {  // poison the chunk: decodes as NaN (0 · NaN)
      scales[c] = std::numeric_limits<float>::quiet_NaN();
      std::fill(q.begin() + static_cast<std::ptrdiff_t>(begin), q.begin() + static_cast<std::ptrdiff_t>(end), 0);
      continue;
    }
    const float scale = max / 127.0f;
    scales[c] = scale;
    // A zero or subnormal scale (1/scale could overflow): the chunk quantizes to zeros.
    const float inv = scale >= std::numeric_limits<float>::min() ? 1.0f / scale : 0.0f;
    for (std::size_t i = begin; i < end; ++i) {
      const float v = std::clamp(std::nearbyint(in[i] * inv), -127.0f, 127.0f);
      q[i] = static_cast<std::int8_t>(v);
    }
  }
}

void dequantize_int8(std::span<const float> scales, std::span<const std::int8_t> q, std::span<float> out) {
  TROUPE_CHECK(out.size() == q.size() && scales.size() == int8_scale_count(q.size()), q.size(), " codes, ",
               out.size(), " outputs, ", scales.size(), " scales");
  for (std::size_t c = 0; c < scales.size(); ++c) {
    const std::size_t begin = c * kInt8Chunk;
    const std::size_t end = std::min(q.size(), begin + kInt8Chunk);
    const float scale = scales[c];
    for (std::size_t i = begin; i < end; ++i) out[i] = static_cast<float>(q[i]) * scale;
  }
}

}  // namespace troupe::comm
