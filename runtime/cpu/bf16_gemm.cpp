// bf16 matrix products: the vdpbf16ps kernel with its packing, and the portable rounding fallback.
#include "runtime/cpu/bf16_gemm.h"

#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "runtime/cpu/avx512_tile_store.h"
#include "runtime/error.h"

namespace troupe {

bool cpu_has_avx512_bf16() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(1, 0, eax, ebx, ecx, edx);
  const bool osxsave = (ecx & (1u << 27)) != 0;
  if (!osxsave) return false;
  // XCR0: the OS saves SSE, AVX and the three AVX-512 state components (bits 1, 2, 5, 6, 7).
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 0xe6u) != 0xe6u) return false;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx512f = (ebx & (1u << 16)) != 0, avx512bw = (ebx & (1u << 30)) != 0;
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  const bool avx512_bf16 = (eax & (1u << 5)) != 0;
  return avx512f && avx512bw && avx512_bf16;
}

Bf16Kernel best_bf16_kernel() {
  static const Bf16Kernel best = cpu_has_avx512_bf16() ? Bf16Kernel::avx512 : Bf16Kernel::portable;
  return best;
}

namespace {

#define TROUPE_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

constexpr std::int64_t kMr = 8;             // rows of the micro-kernel
constexpr std::int64_t kNr = 32;            // columns of the micro-kernel: two zmm of f32
constexpr std::int64_t kTileRows = 8 * kMr;  // a thread's unit of work: 64 rows x 128 columns of c
constexpr std::int64_t kTileCols = 4 * kNr;

std::int64_t round_up(std::int64_t x, std::int64_t to) { return (x + to - 1) / to * to; }

// Two bf16 in one 32-bit word, the lower k index in the lower half (what vdpbf16ps pairs up).
inline std::uint32_t pair_bits(float lo, float hi) {
  return static_cast<std::uint32_t>(bf16_bits(lo)) | static_cast<std::uint32_t>(bf16_bits(hi)) << 16;
}

// dst[p][j] = pair(src[2p][j], src[2p+1][j]) for p < ceil(rows/2), j < cols; zeros past rows and cols.
// For b as stored (k x n) and for a transposed (a is k x m).
TROUPE_AVX512_BF16 void interleave_rows(ThreadPool& pool, const float* src, std::int64_t ld, std::int64_t rows,
                                        std::int64_t cols, std::int64_t cols_pad, std::uint32_t* dst) {
  const std::int64_t pairs = (rows + 1) / 2;
  pool.parallel_for(pairs, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p) {
      const float* r0 = src + 2 * p * ld;
      std::uint32_t* out = dst + p * cols_pad;
      if (2 * p + 1 < rows) {
        const float* r1 = r0 + ld;
        for (std::int64_t j = 0; j < cols; ++j) out[j] = pair_bits(r0[j], r1[j]);
      } else {
        for (std::int64_t j = 0; j < cols; ++j) out[j] = bf16_bits(r0[j]);
      }
      std::fill(out + cols, out + cols_pad, 0u);
    }
  }, 8);
}

// dst[i][p] = pair(src[i][2p], src[i][2p+1]) for i < rows (then zero rows up to rows_pad): a as stored
// (m x k), rounded row by row.
TROUPE_AVX512_BF16 void round_rows(ThreadPool& pool, const float* src, std::int64_t ld, std::int64_t rows,
                                   std::int64_t rows_pad, std::int64_t k, std::uint32_t* dst) {
  const std::int64_t pairs = (k + 1) / 2;
  pool.parallel_for(rows_pad, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      std::uint32_t* out = dst + i * pairs;
      if (i >= rows) {
        std::fill(out, out + pairs, 0u);
        continue;
      }
      const float* row = src + i * ld;
      for (std::int64_t p = 0; p < k / 2; ++p) out[p] = pair_bits(row[2 * p], row[2 * p + 1]);
      if (k % 2) out[pairs - 1] = bf16_bits(row[k - 1]);
    }
  }, 16);
}

// dst[p][j] = pair(src[j][2p], src[j][2p+1]): b transposed (b is n x k), 16 columns of dst at a time so
// that the writes are whole cache lines.
TROUPE_AVX512_BF16 void transpose_pairs(ThreadPool& pool, const float* src, std::int64_t ld, std::int64_t n,
                                        std::int64_t n_pad, std::int64_t k, std::uint32_t* dst) {
  const std::int64_t pairs = (k + 1) / 2;
  pool.parallel_for(n_pad / 16, [&](std::int64_t g0, std::int64_t g1) {
    for (std::int64_t g = g0; g < g1; ++g) {
      const std::int64_t j0 = g * 16, jn = std::min<std::int64_t>(16, std::max<std::int64_t>(0, n - j0));
      for (std::int64_t p = 0; p < pairs; ++p) {
        std::uint32_t* out = dst + p * n_pad + j0;
        const bool full = 2 * p + 1 < k;
        for (std::int64_t jj = 0; jj < jn; ++jj) {
          const float* row = src + (j0 + jj) * ld + 2 * p;
          out[jj] = full ? pair_bits(row[0], row[1]) : bf16_bits(row[0]);
        }
        for (std::int64_t jj = jn; jj < 16; ++jj) out[jj] = 0u;
      }
    }
  }, 1);
}

// c[rows x cols] (rows <= 8, cols <= 32) = alpha * sum over p of a-pairs . b-pairs + beta * c.
// a's pair p of row r is a[r * a_row + p * a_pair]; b's pairs p for the 32 columns are at b + p * b_pair.
TROUPE_AVX512_BF16 void micro_kernel(const std::uint32_t* a, std::int64_t a_row, std::int64_t a_pair,
                                     const std::uint32_t* b, std::int64_t b_pair, std::int64_t pairs, float* c,
                                     std::int64_t ldc, std::int64_t rows, std::int64_t cols, float alpha,
                                     float beta) {
  __m512 acc[kMr][2];
#pragma GCC unroll 8
  for (int r = 0; r < kMr; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (std::int64_t p = 0; p < pairs; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * b_pair);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + p * b_pair + 16);
    const std::uint32_t* ap = a + p * a_pair;
#pragma GCC unroll 8
    for (int r = 0; r < kMr; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(ap[r * a_row]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
    }
  }
  cpu::store_tile(acc, c, ldc, rows, cols, alpha, beta, beta != 0.0f);
}

// Packing buffers, kept per calling thread between calls (a training step makes hundreds of products).
struct PackBuffers {
  std::vector<std::uint32_t> a, b;
};
PackBuffers& pack_buffers() {
  thread_local PackBuffers buffers;
  return buffers;
}

void gemm_avx512(ThreadPool& pool, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                 float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                 std::int64_t ldc) {
  const std::int64_t pairs = (k + 1) / 2, m_pad = round_up(m, kMr), n_pad = round_up(n, kNr);
  PackBuffers& buf = pack_buffers();
  buf.b.resize(static_cast<std::size_t>(pairs * n_pad));
  if (trans_b) {
    transpose_pairs(pool, b, ldb, n, n_pad, k, buf.b.data());
  } else {
    interleave_rows(pool, b, ldb, k, n, n_pad, buf.b.data());
  }
  // a's pairs: [row][pair] when a is stored m x k, [pair][row] when it is stored transposed (k x m).
  buf.a.resize(static_cast<std::size_t>(pairs * m_pad));
  std::int64_t a_row = pairs, a_pair = 1;
  if (trans_a) {
    interleave_rows(pool, a, lda, k, m, m_pad, buf.a.data());
    a_row = 1;
    a_pair = m_pad;
  } else {
    round_rows(pool, a, lda, m, m_pad, k, buf.a.data());
  }
  const std::uint32_t* ap = buf.a.data();
  const std::uint32_t* bp = buf.b.data();
  const std::int64_t tile_rows = (m_pad + kTileRows - 1) / kTileRows, tile_cols = (n_pad + kTileCols - 1) / kTileCols;
  pool.parallel_for(tile_rows * tile_cols, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) {
      const std::int64_t i_end = std::min(m_pad, (t / tile_cols + 1) * kTileRows);
      const std::int64_t j_end = std::min(n_pad, (t % tile_cols + 1) * kTileCols);
      for (std::int64_t j = (t % tile_cols) * kTileCols; j < j_end; j += kNr)
        for (std::int64_t i = (t / tile_cols) * kTileRows; i < i_end; i += kMr)
          micro_kernel(ap + i * a_row, a_row, a_pair, bp + j, n_pad, pairs, c + i * ldc + j, ldc,
                       std::min(kMr, m - i), std::min(kNr, n - j), alpha, beta);
    }
  });
}

}  // namespace

std::vector<float> bf16_rounded_copy(ThreadPool& pool, const float* x, std::int64_t rows, std::int64_t cols,
                                     std::int64_t ld) {
  std::vector<float> out(static_cast<std::size_t>(rows * cols));
  pool.parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r)
      for (std::int64_t j = 0; j < cols; ++j) out[r * cols + j] = round_to_bf16(x[r * ld + j]);
  }, 16);
  return out;
}

void gemm_bf16(Bf16Kernel kernel, ThreadPool& pool, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n,
               std::int64_t k, float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
               float beta, float* c, std::int64_t ldc, F32Gemm f32_gemm, void* f32_ctx) {
  if (m == 0 || n == 0) return;
  if (kernel == Bf16Kernel::avx512) {
    TROUPE_CHECK(cpu_has_avx512_bf16(), "the avx512 bf16 kernel needs a CPU with AVX512-BF16");
    gemm_avx512(pool, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // op(a) is m x k: stored m x k, or k x m when transposed; likewise op(b), k x n.
  const std::int64_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
  const std::int64_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
  const std::vector<float> ar = bf16_rounded_copy(pool, a, a_rows, a_cols, lda);
  const std::vector<float> br = bf16_rounded_copy(pool, b, b_rows, b_cols, ldb);
  f32_gemm(f32_ctx, trans_a, trans_b, m, n, k, alpha, ar.data(), a_cols, br.data(), b_cols, beta, c, ldc);
}

}  // namespace troupe
