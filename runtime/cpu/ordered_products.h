// Fixed-order products for deterministic mode: every output element's terms are added in an order that
// depends only on the length of its sum, never on the shape of the call or on how outputs are tiled.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>
#if defined(__FMA__)
#include <immintrin.h>
#endif

// Without AVX (a portable build) 32-byte vectors are passed differently; these functions are inline only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

namespace troupe::cpu {

// Eight floats in one register (GCC's vector extension).
using F32x8 = float __attribute__((vector_size(32)));

// acc + a b. Explicitly fused where the CPU has FMA: left to the compiler, whether a multiply and an add
// are contracted depends on how a loop was unrolled (measured: a 4 x 4 tile and a single dot product
// of 64 terms differed), and every element must see the same operations in every tile.
inline F32x8 madd(F32x8 acc, F32x8 a, F32x8 b) {
#if defined(__FMA__)
  return reinterpret_cast<F32x8>(_mm256_fmadd_ps(reinterpret_cast<__m256>(a), reinterpret_cast<__m256>(b),
                                                 reinterpret_cast<__m256>(acc)));
#else
  return acc + a * b;
#endif
}

inline float madd(float acc, float a, float b) {
#if defined(__FMA__)
  return __builtin_fmaf(a, b, acc);
#else
  return acc + a * b;
#endif
}

inline F32x8 load8(const float* p) {
  F32x8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// out[r * J + j] = sum over i < k of a[r * lda + i] b[j * ldb + i], for R rows of a and J rows of b.
// Each sum: eight interleaved partial sums (lane l takes the terms i = l mod 8 of the whole-eight part),
// the remainder added to lane 0 in order, then the lanes combined pairwise. Tiling R x J outputs only
// shares the loads: every element sees exactly the operations of the 1 x 1 tile.
template <int R, int J>
inline void ordered_dot_tile(const float* a, std::int64_t lda, const float* b, std::int64_t ldb, std::int64_t k,
                             float* out) {
  F32x8 acc[R][J];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < J; ++j) acc[r][j] = F32x8{};
  std::int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    F32x8 va[R], vb[J];
    for (int r = 0; r < R; ++r) va[r] = load8(a + r * lda + i);
    for (int j = 0; j < J; ++j) vb[j] = load8(b + j * ldb + i);
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < J; ++j) acc[r][j] = madd(acc[r][j], va[r], vb[j]);
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < J; ++j) {
      float t[8];
      std::memcpy(t, &acc[r][j], sizeof t);
      for (std::int64_t ii = i; ii < k; ++ii) t[0] = madd(t[0], a[r * lda + ii], b[j * ldb + ii]);
      out[r * J + j] = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
    }
}

// sum over i < k of a[i] b[i] in the order of ordered_dot_tile.
inline float ordered_dot(const float* a, const float* b, std::int64_t k) {
  float out;
  ordered_dot_tile<1, 1>(a, 0, b, 0, k, &out);
  return out;
}

// c[r, j] = sum over i < k of a[r, i] b[i, j] for rows [r0, r1) and all j < n, each sum taken in order
// i = 0, 1, ... from zero (one multiply-add per term). a[r, i] sits at a[r * a_row + i * a_col] (strides,
// so that a transposed operand needs no copy); b is [k, n] with rows ldb apart; c rows ldc apart.
// Four rows share each load of b; sixteen columns are one tile.
inline void ordered_product_kn(std::int64_t r0, std::int64_t r1, std::int64_t n, std::int64_t k, const float* a,
                               std::int64_t a_row, std::int64_t a_col, const float* b, std::int64_t ldb, float* c,
                               std::int64_t ldc) {
  constexpr int kRows = 4;
  std::int64_t r = r0;
  const auto rows_tile = [&](auto rows_c) {
    constexpr int RT = decltype(rows_c)::value;
    std::int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
      F32x8 acc[RT][2];
      for (int t = 0; t < RT; ++t) acc[t][0] = acc[t][1] = F32x8{};
      for (std::int64_t i = 0; i < k; ++i) {
        const F32x8 b0 = load8(b + i * ldb + j), b1 = load8(b + i * ldb + j + 8);
        for (int t = 0; t < RT; ++t) {
          const float av = a[(r + t) * a_row + i * a_col];
          const F32x8 va = F32x8{} + av;
          acc[t][0] = madd(acc[t][0], va, b0);
          acc[t][1] = madd(acc[t][1], va, b1);
        }
      }
      for (int t = 0; t < RT; ++t) {
        std::memcpy(c + (r + t) * ldc + j, &acc[t][0], sizeof(F32x8));
        std::memcpy(c + (r + t) * ldc + j + 8, &acc[t][1], sizeof(F32x8));
      }
    }
    for (; j < n; ++j)
      for (int t = 0; t < RT; ++t) {
        float s = 0.0f;
        for (std::int64_t i = 0; i < k; ++i) s = madd(s, a[(r + t) * a_row + i * a_col], b[i * ldb + j]);
        c[(r + t) * ldc + j] = s;
      }
  };
  for (; r + kRows <= r1; r += kRows) rows_tile(std::integral_constant<int, kRows>{});
  for (; r < r1; ++r) rows_tile(std::integral_constant<int, 1>{});
}

}  // namespace troupe::cpu

#pragma GCC diagnostic pop
