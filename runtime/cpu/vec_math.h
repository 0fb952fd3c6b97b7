// Owns branch-free float exp and tanh that the compiler can vectorise (libm's are scalar calls).
//
// exp: range reduction x = n ln2 + r with |r| <= ln2/2, a degree-6 polynomial for e^r (the Cephes
// coefficients), and 2^n built in the exponent bits. Relative error about 2e-7 over the float range;
// inputs are clamped to [-87.3, 88.3], so results stay finite and normal.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace troupe::cpu {

inline float fast_exp(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;  // ln2 split in two parts for an exact product with n
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

// tanh(u) = 1 - 2 / (exp(2u) + 1): saturates cleanly at +-1 for large |u|.
inline float fast_tanh(float u) { return 1.0f - 2.0f / (fast_exp(2.0f * u) + 1.0f); }

}  // namespace troupe::cpu
