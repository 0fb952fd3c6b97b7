// Owns branch-free float exp and tanh that the compiler can vectorise (libm's are scalar calls).
//
// exp: range reduction x = n ln2 + r with |r| <= ln2/2, a degree-6 polynomial for e^r (the Cephes
// coefficients), and 2^n built in the exponent bits. Relative error about 2e-7 over the float range;
// inputs are clamped to [-87.3, 88.3], so results stay finite and normal.
#pragma once

#include <cmath>
#include <cstdint>
#include <bit>

namespace troupe::cpu {

inline float fast_exp(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  // Round to nearest by adding and subtracting 1.5 * 2^23 (std::floor would block vectorisation:
  // without -fno-trapping-math GCC keeps it a scalar call).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
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
  return p * std::bit_cast<float>(bits);
}

// tanh(u) = 1 - 2 / (exp(2u) + 1): saturates cleanly at +-1 for large |u|.
inline float fast_tanh(float u) { return 1.0f - 2.0f / (fast_exp(2.0f * u) + 1.0f); }

}  // namespace troupe::cpu

namespace troupe::cpu {

// out[j] = exp(in[j] - shift) for j < n (in and out may be the same row). Returns nothing: the sum is
// taken separately, in order, because a running sum in this loop would keep it from vectorising.
inline void exp_shifted(const float* in, float* out, std::int64_t n, float shift) {
  for (std::int64_t j = 0; j < n; ++j) out[j] = fast_exp(in[j] - shift);
}

inline float row_max(const float* in, std::int64_t n) {
  float mx = in[0];
  for (std::int64_t j = 1; j < n; ++j) mx = in[j] > mx ? in[j] : mx;
  return mx;
}

inline float row_sum(const float* in, std::int64_t n) {
  float s = 0.0f;
  for (std::int64_t j = 0; j < n; ++j) s += in[j];
  return s;
}

// Sums in 16 interleaved lanes (term j goes to lane j % 16), the lanes then added pairwise: the order is fixed
// by n alone, and the loop vectorises (a single running sum cannot be reordered by the compiler).
constexpr int kLanes = 16;

inline float lanes_total(float* lane) {
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) lane[l] += lane[l + w];
  return lane[0];
}

inline float lane_sum(const float* in, std::int64_t n) {
  float lane[kLanes] = {};
  std::int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += in[j + l];
  for (int l = 0; j + l < n; ++l) lane[l] += in[j + l];
  return lanes_total(lane);
}

// Sum of (in[j] - shift)^2, lanes as lane_sum.
inline float lane_sum_sq(const float* in, std::int64_t n, float shift) {
  float lane[kLanes] = {};
  std::int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const float d = in[j + l] - shift;
      lane[l] += d * d;
    }
  for (int l = 0; j + l < n; ++l) {
    const float d = in[j + l] - shift;
    lane[l] += d * d;
  }
  return lanes_total(lane);
}

inline void scale_row(float* row, std::int64_t n, float factor) {
  for (std::int64_t j = 0; j < n; ++j) row[j] *= factor;
}

}  // namespace troupe::cpu
