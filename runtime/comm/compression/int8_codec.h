// Owns int8 quantization with one float scale per chunk of kInt8Chunk values.
//
// A block of values is cut into chunks of kInt8Chunk (the last may be shorter). Chunk j gets
//   scale_j = max_{i in chunk j} |x_i| / 127        (0 for an all-zero chunk)
//   q_i     = round_to_nearest_even(x_i / scale_j)  clamped to [-127, 127]
//   x̂_i     = q_i · scale_j
// Error bound: |x_i − x̂_i| ≤ scale_j / 2 · (1 + 2^-13) — half a quantization step, plus float rounding
// of x·(1/scale) and of q·scale. A chunk whose max is below 127·FLT_MIN (≈ 1.5e-36, a subnormal scale)
// quantizes to all zeros. The bound is per chunk, so one large gradient only coarsens its own
// 256 neighbours, not the whole bucket. Cost on the wire: 1 byte per value + 4 bytes per chunk
// (≈ 4.06× smaller than float32 for full chunks).
// A chunk holding ±inf or NaN gets a non-finite scale and decodes as NaN throughout, so an overflowing
// gradient stays visible (to a loss scaler, say) instead of being quantized into something finite.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace troupe::comm {

// Values per scale. 256 keeps the scales' overhead at 1/64 of the int8 payload.
inline constexpr std::size_t kInt8Chunk = 256;

// How many scales a block of n values needs: ceil(n / kInt8Chunk).
constexpr std::size_t int8_scale_count(std::size_t n) { return (n + kInt8Chunk - 1) / kInt8Chunk; }

// Quantizes `in` into `scales` (int8_scale_count(in.size()) floats) and `q` (in.size() values).
void quantize_int8(std::span<const float> in, std::span<float> scales, std::span<std::int8_t> q);

// out[i] = q[i] · scales[i / kInt8Chunk]; `out` has the size of `q`.
void dequantize_int8(std::span<const float> scales, std::span<const std::int8_t> q, std::span<float> out);

}  // namespace troupe::comm
