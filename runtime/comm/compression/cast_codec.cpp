// Owns the casting codecs' loops: fp16/bf16 encode and decode, and fp16's per-block power-of-two scale.
#include "runtime/comm/compression/cast_codec.h"

#include <algorithm>
#include <cmath>

#if defined(__F16C__) && defined(__AVX__)
#include <immintrin.h>
#define TROUPE_F16C 1
#endif

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

namespace {

// The block's largest magnitude, and whether every value is finite.
struct BlockMax {
  float max = 0.0f;
  bool finite = true;
};
BlockMax block_max(std::span<const float> in) {
  BlockMax b;
  for (const float v : in) {
    const float a = std::fabs(v);
    b.max = std::max(b.max, a);
    b.finite &= a <= 3.4028234e38f;  // false for inf and NaN
  }
  return b;
}

int exponent_for(const BlockMax& b) {
  if (!b.finite || b.max == 0.0f) return 0;
  int exp = 0;
  std::frexp(b.max, &exp);  // max = m·2^exp, m in [0.5, 1)
  return std::clamp(15 - exp, -126, 126);
}

}  // namespace

int fp16_block_exponent(std::span<const float> in) { return exponent_for(block_max(in)); }

int encode_fp16_block(std::span<const float> in, std::span<std::uint16_t> out) {
  TROUPE_CHECK(in.size() == out.size(), in.size(), " != ", out.size());
  const BlockMax b = block_max(in);
  const int e = exponent_for(b);
  const float scale = pow2(e);
  std::size_t i = 0;
#ifdef TROUPE_F16C
  // vcvtps2ph rounds to nearest even like f32_to_fp16. It overflows to inf rather than saturating, so
  // it only runs on a finite block, which the scale has brought below 2^15 (or which is all zeros).
  if (b.finite) {
    const __m256 s = _mm256_set1_ps(scale);
    for (; i + 8 <= in.size(); i += 8) {
      const __m128i h = _mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(in.data() + i), s), _MM_FROUND_TO_NEAREST_INT);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out.data() + i), h);
    }
  }
#endif
  for (; i < in.size(); ++i) out[i] = f32_to_fp16(in[i] * scale);
  return e;
}

void decode_fp16_block(std::span<const std::uint16_t> in, int exponent, std::span<float> out) {
  TROUPE_CHECK(in.size() == out.size(), in.size(), " != ", out.size());
  TROUPE_CHECK(exponent >= -126 && exponent <= 126, "exponent ", exponent);
  const float scale = pow2(-exponent);
  std::size_t i = 0;
#ifdef TROUPE_F16C
  const __m256 s = _mm256_set1_ps(scale);
  for (; i + 8 <= in.size(); i += 8) {  // vcvtph2ps is exact, like fp16_to_f32
    const __m256 f = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in.data() + i)));
    _mm256_storeu_ps(out.data() + i, _mm256_mul_ps(f, s));
  }
#endif
  for (; i < in.size(); ++i) out[i] = fp16_to_f32(in[i]) * scale;
}

}  // namespace troupe::comm
