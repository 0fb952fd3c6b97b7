// Owns the casting codecs' loops: fp16/bf16 encode and decode, and fp16's per-block power-of-two scale.
#include "runtime/comm/compression/cast_codec.h"

#include <algorithm>
#include <cmath>

#include "runtime/dtype.h"
#include "runtime/error.h"

namespace troupe::comm {

namespace {

// 2^e as a float, for e in [-126, 127] (a normal float, so multiplying by it is exact).
float pow2(int e) {
  const std::uint32_t bits = static_cast<std::uint32_t>(e + 127) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

void encode_fp16(std::span<const float> in, std::span<std::uint16_t> out) {
  TROUPE_CHECK(in.size() == out.size(), in.size(), " != ", out.size());
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = f32_to_fp16(in[i]);
}

void decode_fp16(std::span<const std::uint16_t> in, std::span<float> out) {
  TROUPE_CHECK(in.size() == out.size(), in.size(), " != ", out.size());
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = fp16_to_f32(in[i]);
}

void encode_bf16(std::span<const float> in, std::span<std::uint16_t> out) {
  TROUPE_CHECK(in.size() == out.size(), in.size(), " != ", out.size());
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = f32_to_bf16(in[i]);
}

void decode_bf16(std::span<const std::uint16_t> in, std::span<float> out) {
  TROUPE_CHECK(in.size() == out.size(), in.size(), " != ", out.size());
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = bf16_to_f32(in[i]);
}

int fp16_block_exponent(std::span<const float> in) {
  float max = 0.0f;
  bool finite = true;
  for (const float v : in) {
    const float a = std::fabs(v);
    max = std::max(max, a);
    finite &= a <= 3.4028234e38f;  // false for inf and NaN
  }
  if (!finite || max == 0.0f) return 0;
  int exp = 0;
  std::frexp(max, &exp);  // max = m·2^exp, m in [0.5, 1)
  return std::clamp(15 - exp, -126, 126);
}

int encode_fp16_block(std::span<const float> in, std::span<std::uint16_t> out) {
  TROUPE_CHECK(in.size() == out.size(), in.size(), " != ", out.size());
  const int e = fp16_block_exponent(in);
  const float scale = pow2(e);
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = f32_to_fp16(in[i] * scale);
  return e;
}

void decode_fp16_block(std::span<const std::uint16_t> in, int exponent, std::span<float> out) {
  TROUPE_CHECK(in.size() == out.size(), in.size(), " != ", out.size());
  TROUPE_CHECK(exponent >= -126 && exponent <= 126, "exponent ", exponent);
  const float scale = pow2(-exponent);
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = fp16_to_f32(in[i]) * scale;
}

}  // namespace troupe::comm
