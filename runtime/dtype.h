// Owns element types (f32, bf16, i32, i64), their sizes and names, and bf16 <-> f32 conversion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace troupe {

enum class DType : std::uint8_t { f32, bf16, i32, i64 };

std::size_t dtype_size(DType t);
std::string_view dtype_name(DType t);  // "f32", "bf16", "i32", "i64"

// bf16 is storage only: compute happens in f32. Rounding is round-to-nearest-even, NaN kept quiet.
inline std::uint16_t f32_to_bf16(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>(bits >> 16);
}

inline float bf16_to_f32(std::uint16_t h) {
  std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace troupe
