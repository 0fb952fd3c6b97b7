// Owns store_tile: the last step of the AVX-512 micro-kernels (packed_sgemm.cpp's f32 one, bf16_gemm.cpp's
// vdpbf16ps one), which writes their rows x 32 tile of f32 sums into c, scaled by alpha, plus beta times c.
// Its operations and their order are part of both products' bitwise results (tests/test_packed_sgemm.cpp,
// tests/test_bf16_gemm.cpp and the GPT's bitwise tests pin them).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace troupe::cpu {

// c[r, j] = alpha * acc[r][j / 16][j % 16], plus beta * c[r, j] (its old value, one FMA) when `add_c`, for
// r < rows and j < cols (rows <= kRows, cols <= 32). Columns past `cols` are masked off, neither read nor
// written; rows past `rows` are not touched. Inlined into each kernel (its callers' targets include
// avx512f), so that the accumulators stay in registers.
template <std::size_t kRows>
__attribute__((target("avx512f"), always_inline)) inline void store_tile(const __m512 (&acc)[kRows][2], float* c,
                                                                       std::int64_t ldc, std::int64_t rows,
                                                                       std::int64_t cols, float alpha, float beta,
                                                                       bool add_c) {
  const __mmask16 m0 = cols >= 16 ? __mmask16(0xffff) : __mmask16((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? __mmask16(0xffff) : cols > 16 ? __mmask16((1u << (cols - 16)) - 1) : __mmask16(0);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
  for (std::size_t r = 0; r < kRows; ++r) {
    if (static_cast<std::int64_t>(r) >= rows) break;
    float* cr = c + static_cast<std::int64_t>(r) * ldc;
    __m512 v0 = _mm512_mul_ps(va, acc[r][0]), v1 = _mm512_mul_ps(va, acc[r][1]);
    if (add_c) {
      v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);
      v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), v1);
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}

}  // namespace troupe::cpu
