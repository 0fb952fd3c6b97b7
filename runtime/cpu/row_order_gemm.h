// Owns row_order_gemm: a small matrix product whose every output element is one fused multiply-add chain
// over k in order, so that its value depends on its own row and column only — never on how many rows or
// columns share the call, how they are tiled, or on the thread count. The LSTM recurrence uses it for its
// many small products (a step's h W_hhᵀ and dz W_hh), where a BLAS call's fixed cost (and packing W_hh
// again every step) outweighed the work and where BLAS picks kernels by shape (whose sums differ).
//
//   C[m, n] (= or +=) sum over k = 0 .. K-1, in that order, of A(m, k) B(k, n)
//   A(m, k) = a[m * a_row + k * a_col]   (a_row = lda, a_col = 1: A as stored; a_row = 1, a_col = lda: Aᵀ)
//   B(k, n) = b[b_off(k) + n]            (b_off(k) = k * ldb, or a table of row offsets: rows anywhere,
//                                         e.g. patch rows read straight out of a padded image)
// The chain starts from 0 and its result is added to C once (accumulate) or stored. Columns go 16 (AVX-512)
// or 8 (AVX2) at a time, the last group masked, every lane running the same chain as a full vector's.
#pragma once

#include <cstdint>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

namespace troupe::cpu {

// Row offsets of B: k * ldb, or offsets[k].
struct BRows {
  std::int64_t ldb = 0;
  const std::int64_t* offsets = nullptr;
  std::int64_t operator()(std::int64_t k) const { return offsets ? offsets[k] : k * ldb; }
};

namespace row_order {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
using Vec = __m512;
using Mask = __mmask16;
inline Mask mask_of(std::int64_t n) { return n >= 16 ? Mask(0xFFFF) : Mask((1u << n) - 1u); }
inline Vec zero() { return _mm512_setzero_ps(); }
inline Vec load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
inline Vec bcast(float x) { return _mm512_set1_ps(x); }
inline Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
inline void store(float* p, Vec v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kLanes = 8;
using Vec = __m256;
using Mask = __m256i;
inline Mask mask_of(std::int64_t n) {
  const int k = n >= 8 ? 8 : static_cast<int>(n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline Vec zero() { return _mm256_setzero_ps(); }
inline Vec load(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
inline Vec bcast(float x) { return _mm256_set1_ps(x); }
inline Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
inline void store(float* p, Vec v, Mask m) { _mm256_maskstore_ps(p, m, v); }
#endif

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
// R rows x V vectors of columns starting at column n (the last vector masked by `last`).
template <int R, int V>
inline void tile(std::int64_t n, std::int64_t K, const float* a, std::int64_t a_row, std::int64_t a_col,
                 const float* b, BRows rows, float* c, std::int64_t ldc, bool accumulate, Mask last) {
  Vec acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = zero();
  Mask masks[V];
  for (int v = 0; v < V; ++v) masks[v] = v + 1 == V ? last : mask_of(kLanes);
  for (std::int64_t k = 0; k < K; ++k) {
    const float* brow = b + rows(k) + n;
    Vec vb[V];
    for (int v = 0; v < V; ++v) vb[v] = load(brow + v * kLanes, masks[v]);
    for (int r = 0; r < R; ++r) {
      const Vec va = bcast(a[r * a_row + k * a_col]);
      for (int v = 0; v < V; ++v) acc[r][v] = fmadd(va, vb[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) {
      float* out = c + r * ldc + n + v * kLanes;
      store(out, accumulate ? add(load(out, masks[v]), acc[r][v]) : acc[r][v], masks[v]);
    }
}

template <int R>
inline void row_block(std::int64_t N, std::int64_t K, const float* a, std::int64_t a_row, std::int64_t a_col,
                      const float* b, BRows rows, float* c, std::int64_t ldc, bool accumulate) {
  std::int64_t n = 0;
  for (; n + 2 * kLanes <= N; n += 2 * kLanes)
    tile<R, 2>(n, K, a, a_row, a_col, b, rows, c, ldc, accumulate, mask_of(kLanes));
  if (N - n > kLanes) tile<R, 2>(n, K, a, a_row, a_col, b, rows, c, ldc, accumulate, mask_of(N - n - kLanes));
  else if (N > n) tile<R, 1>(n, K, a, a_row, a_col, b, rows, c, ldc, accumulate, mask_of(N - n));
}
#endif

}  // namespace row_order

// C[M, N] (row stride ldc) = or += A B as described above.
inline void row_order_gemm(std::int64_t M, std::int64_t N, std::int64_t K, const float* a, std::int64_t a_row,
                           std::int64_t a_col, const float* b, BRows rows, float* c, std::int64_t ldc,
                           bool accumulate) {
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
  using namespace row_order;
  std::int64_t m = 0;
  for (; m + 4 <= M; m += 4) row_block<4>(N, K, a + m * a_row, a_row, a_col, b, rows, c + m * ldc, ldc, accumulate);
  for (; m < M; ++m) row_block<1>(N, K, a + m * a_row, a_row, a_col, b, rows, c + m * ldc, ldc, accumulate);
#else
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      float acc = 0.0f;
      for (std::int64_t k = 0; k < K; ++k) acc = __builtin_fmaf(a[m * a_row + k * a_col], b[rows(k) + n], acc);
      c[m * ldc + n] = accumulate ? c[m * ldc + n] + acc : acc;
    }
#endif
}

}  // namespace troupe::cpu
