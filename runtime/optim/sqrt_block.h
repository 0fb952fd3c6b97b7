// Owns sqrt_inplace: an element-wise square root over a float block that vectorises without -fno-math-errno.
//
// Under the default -fmath-errno, GCC keeps every std::sqrt a scalar call (it must be able to set errno
// for a negative input), which stops the vectoriser on any loop that contains one. Adam and RMSprop
// therefore compute their square roots block by block through this function. The SIMD instructions
// are IEEE correctly rounded, like sqrtf, so results are bit-identical to std::sqrt; errno is simply
// never set (a negative input gives NaN either way).
#pragma once

#include <cmath>
#include <cstddef>

#if defined(__SSE2__) || defined(_M_X64)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

namespace troupe::optim_detail {

inline void sqrt_inplace(float* x, std::size_t n) {
  std::size_t i = 0;
  // No AVX-512 path: GCC 12's _mm512_sqrt_ps trips -Wmaybe-uninitialized (GCC bug 105593), and the
  // square roots are a small part of a memory-bound loop.
#if defined(__AVX__)
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_sqrt_ps(_mm256_loadu_ps(x + i)));
#endif
#if defined(__SSE2__) || defined(_M_X64)
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#elif defined(__aarch64__)
  for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vsqrtq_f32(vld1q_f32(x + i)));
#endif
  for (; i < n; ++i) x[i] = std::sqrt(x[i]);
}

// Elements per block: small enough that a block's temporaries stay in L1, large enough to amortise the
// loop overhead.
inline constexpr std::size_t kBlock = 256;

}  // namespace troupe::optim_detail
