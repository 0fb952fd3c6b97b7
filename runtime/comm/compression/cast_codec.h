// Owns the casting codecs: float32 <-> IEEE half (fp16) and bfloat16, round-to-nearest-even, and fp16's per-block power-of-two scale.
//
// Rounding: both casts round to nearest, ties to even (the IEEE default), so a value exactly halfway
// between two representable numbers goes to the one with an even last mantissa bit.
//
// fp16 range (max finite 65504, smallest normal 2^-14, subnormals down to 2^-24):
//  * f32_to_fp16 on its own SATURATES: a finite value whose magnitude rounds above 65504 becomes
//    ±65504 (not ±inf); ±inf stays ±inf and NaN stays a (quiet) NaN.
//  * Gradients usually live far below 1 (often 1e-4 .. 1e-8), where plain fp16 loses precision or
//    flushes to zero, and a rare spike can exceed 65504. So the compressor never casts raw values:
//    encode_fp16_block picks a power-of-two scale 2^e per block such that the block's largest
//    magnitude lands in [2^14, 2^15), casts x·2^e, and stores e beside the halves. Scaling by a power
//    of two is exact, so the only error is the cast's: |x − decode(encode(x))| ≤ 2^-11·|x| for every
//    |x| ≥ max|block|·2^-28 (the scaled value is a normal half), and ≤ max|block|·2^-39 below that.
//    A block containing ±inf or NaN uses e = 0 (then other finite values saturate as above).
// bf16 keeps float32's exponent range, so it needs no scale: |x − bf16(x)| ≤ 2^-8·|x| for normal
// floats (finite values within half a bf16 ulp of FLT_MAX round to inf, as IEEE says).
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

namespace troupe::comm {

// Round-to-nearest-even float -> half, saturating finite overflow to ±65504 (see above).
inline std::uint16_t f32_to_fp16(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  std::uint32_t h;
  if (x >= 0x477ff000u) {  // |f| >= 65520: rounds past 65504 (or is inf / NaN)
    h = x > 0x7f800000u ? 0x7e00u : (x == 0x7f800000u ? 0x7c00u : 0x7bffu);
  } else if (x < 0x38800000u) {  // |f| < 2^-14: a half subnormal (or zero)
    // Adding 0.5f aligns the half's subnormal ulp (2^-24) with the float's last mantissa bit, so
    // the FPU's own round-to-nearest-even does the rounding.
    float v;
    std::memcpy(&v, &x, 4);
    v += 0.5f;
    std::uint32_t bits;
    std::memcpy(&bits, &v, 4);
    h = bits - 0x3f000000u;
  } else {
    const std::uint32_t odd = (x >> 13) & 1u;  // ties go to the even half
    h = (x + 0xc8000fffu + odd) >> 13;         // rebias exponent 127 -> 15, round the 13 dropped bits
  }
  return static_cast<std::uint16_t>(h | sign);
}

// Exact half -> float (every half is a float).
inline float fp16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t bits = static_cast<std::uint32_t>(h & 0x7fffu) << 13;
  const std::uint32_t exp = bits & 0x0f800000u;
  float f;
  if (exp == 0x0f800000u) {  // inf / NaN
    bits += 0x70000000u;
    std::memcpy(&f, &bits, 4);
  } else if (exp == 0) {  // zero / subnormal: let the FPU normalise
    bits += 0x38800000u;
    std::memcpy(&f, &bits, 4);
    f -= 6.103515625e-05f;  // 2^-14
  } else {
    bits += 0x38000000u;
    std::memcpy(&f, &bits, 4);
  }
  std::uint32_t out;
  std::memcpy(&out, &f, 4);
  out |= sign;
  std::memcpy(&f, &out, 4);
  return f;
}

// Elementwise casts; `out` has the size of `in`.
void encode_fp16(std::span<const float> in, std::span<std::uint16_t> out);
void decode_fp16(std::span<const std::uint16_t> in, std::span<float> out);
void encode_bf16(std::span<const float> in, std::span<std::uint16_t> out);
void decode_bf16(std::span<const std::uint16_t> in, std::span<float> out);

// The exponent e that encode_fp16_block uses for `in`: the largest magnitude times 2^e lies in
// [2^14, 2^15); 0 for an empty or all-zero block or one holding inf/NaN. Clamped to [-126, 126].
int fp16_block_exponent(std::span<const float> in);
// out[i] = f32_to_fp16(in[i]·2^e) with e = fp16_block_exponent(in); returns e.
int encode_fp16_block(std::span<const float> in, std::span<std::uint16_t> out);
// out[i] = fp16_to_f32(in[i])·2^-e.
void decode_fp16_block(std::span<const std::uint16_t> in, int exponent, std::span<float> out);

}  // namespace troupe::comm
