// The AVX-512 f32 product: packing of b, the 8 x 32 micro-kernel, and the split over the pool.
#include "runtime/cpu/packed_sgemm.h"

#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "runtime/cpu/avx512_tile_store.h"
#include "runtime/error.h"

namespace troupe {

bool cpu_has_avx512f() {
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid_max(0, nullptr) < 7) return false;
    __cpuid_count(1, 0, eax, ebx, ecx, edx);
    if ((ecx & (1u << 27)) == 0) return false;  // OSXSAVE
    // XCR0: the OS saves SSE, AVX and the three AVX-512 state components (bits 1, 2, 5, 6, 7).
    unsigned xcr0_lo = 0, xcr0_hi = 0;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0xe6u) != 0xe6u) return false;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    return (ebx & (1u << 16)) != 0;
  }();
  return has;
}

namespace {

#define TROUPE_AVX512F __attribute__((target("avx512f")))

constexpr std::int64_t kMr = 8;              // rows of the micro-kernel
constexpr std::int64_t kNr = kPackedNr;      // columns of the micro-kernel: two zmm
constexpr std::int64_t kTileRows = 8 * kMr;  // a thread's unit of work: 64 rows x 128 columns of c
constexpr std::int64_t kTileCols = 4 * kNr;

std::int64_t round_up(std::int64_t x, std::int64_t to) { return (x + to - 1) / to * to; }

// op(b) (k x n) into panels of 32 columns: dst[(panel * k + p) * 32 + j] = op(b)[p, panel * 32 + j], zero
// past n. Each panel is what one micro-kernel column reads, contiguous in p.
void pack_b(ThreadPool& pool, bool trans_b, const float* b, std::int64_t ldb, std::int64_t k, std::int64_t n,
            float* dst) {
  const std::int64_t panels = round_up(n, kNr) / kNr;
  if (!trans_b) {
    // b is k x n: b's row p, read once from start to end, is row p of every panel.
    pool.parallel_for(k, [&](std::int64_t p0, std::int64_t p1) {
      for (std::int64_t p = p0; p < p1; ++p) {
        const float* row = b + p * ldb;
        for (std::int64_t q = 0; q < panels; ++q) {
          const std::int64_t j0 = q * kNr, cols = std::min(kNr, n - j0);
          float* o = dst + (q * k + p) * kNr;
          for (std::int64_t j = 0; j < cols; ++j) o[j] = row[j0 + j];
          for (std::int64_t j = cols; j < kNr; ++j) o[j] = 0.0f;
        }
      }
    }, 16);
    return;
  }
  // b is n x k: column j of panel q is b's row 32 q + j. 16 values of p at a time, so that the panel's lines
  // being written stay in L1 while the 32 rows are read.
  pool.parallel_for(panels, [&](std::int64_t q0, std::int64_t q1) {
    for (std::int64_t q = q0; q < q1; ++q) {
      const std::int64_t j0 = q * kNr, cols = std::min(kNr, n - j0);
      float* out = dst + q * k * kNr;
      for (std::int64_t p0 = 0; p0 < k; p0 += 16) {
        const std::int64_t pn = std::min<std::int64_t>(16, k - p0);
        for (std::int64_t j = 0; j < kNr; ++j) {
          const float* row = b + (j0 + j) * ldb + p0;
          float* o = out + p0 * kNr + j;
          if (j < cols)
            for (std::int64_t p = 0; p < pn; ++p) o[p * kNr] = row[p];
          else
            for (std::int64_t p = 0; p < pn; ++p) o[p * kNr] = 0.0f;
        }
      }
    }
  }, 1);
}

// c[rows x cols] (rows <= 8, cols <= 32) = alpha * (sum over p < kc of op(a)[r, p] b[p][j]) + beta * c, or
// without c's old value when `overwrite`. op(a)[r, p] is a[r * a_row + p * a_p]: a is read where it lies (8
// rows of it, or 8 consecutive floats of each of its rows when transposed), so only b is packed. Each of the
// 16 accumulators adds its terms in p order. Rows past `rows` are not read.
TROUPE_AVX512F void micro_kernel(const float* a, std::int64_t a_row, std::int64_t a_p, const float* b,
                                 std::int64_t kc, float* c, std::int64_t ldc, std::int64_t rows, std::int64_t cols,
                                 float alpha, float beta, bool overwrite) {
  __m512 acc[kMr][2];
#pragma GCC unroll 8
  for (int r = 0; r < kMr; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  if (rows == kMr) {
    for (std::int64_t p = 0; p < kc; ++p) {
      const __m512 b0 = _mm512_loadu_ps(b + p * kNr);
      const __m512 b1 = _mm512_loadu_ps(b + p * kNr + 16);
      const float* ap = a + p * a_p;
#pragma GCC unroll 8
      for (int r = 0; r < kMr; ++r) {
        const __m512 av = _mm512_set1_ps(ap[r * a_row]);
        acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
      }
    }
  } else {  // the last rows of op(a): the missing rows' accumulators stay zero and are not stored
    for (std::int64_t p = 0; p < kc; ++p) {
      const __m512 b0 = _mm512_loadu_ps(b + p * kNr);
      const __m512 b1 = _mm512_loadu_ps(b + p * kNr + 16);
      const float* ap = a + p * a_p;
      for (int r = 0; r < rows; ++r) {
        const __m512 av = _mm512_set1_ps(ap[r * a_row]);
        acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
      }
    }
  }
  cpu::store_tile(acc, c, ldc, rows, cols, alpha, beta, !overwrite);
}

// The packed b, kept per calling thread between calls (a training step makes hundreds of products).
std::vector<float>& pack_buffer() {
  thread_local std::vector<float> buffer;
  return buffer;
}

}  // namespace

void packed_sgemm(ThreadPool& pool, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                  float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta,
                  float* c, std::int64_t ldc) {
  TROUPE_CHECK(cpu_has_avx512f(), "the packed f32 product needs a CPU with AVX-512F");
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  std::vector<float>& packed_b = pack_buffer();
  packed_b.resize(static_cast<std::size_t>(packed_b_floats(k, n)));
  pack_b(pool, trans_b, b, ldb, k, n, packed_b.data());
  packed_sgemm_prepacked(pool, trans_a, m, n, k, alpha, a, lda, packed_b.data(), beta, c, ldc);
}

namespace {
// Tiles [t0, t1) of c (kTileRows x kTileCols each, row-major over the tile grid) of packed_sgemm_prepacked.
void run_tiles(std::int64_t t0, std::int64_t t1, bool trans_a, std::int64_t m, std::int64_t n, std::int64_t k,
               float alpha, const float* a, std::int64_t lda, const float* bp, float beta, float* c, std::int64_t ldc) {
  const std::int64_t m_pad = round_up(m, kMr), n_pad = round_up(n, kNr);
  // op(a)[i, p] = a[i * a_row + p * a_p].
  const std::int64_t a_row = trans_a ? 1 : lda, a_p = trans_a ? lda : 1;
  const std::int64_t tile_cols = (n_pad + kTileCols - 1) / kTileCols;
  for (std::int64_t t = t0; t < t1; ++t) {
    const std::int64_t i_begin = (t / tile_cols) * kTileRows, i_end = std::min(m_pad, i_begin + kTileRows);
    const std::int64_t j_begin = (t % tile_cols) * kTileCols, j_end = std::min(n_pad, j_begin + kTileCols);
    for (std::int64_t p0 = 0; p0 < k; p0 += kPackedKc) {
      const std::int64_t kc = std::min(kPackedKc, k - p0);
      const bool first = p0 == 0;
      for (std::int64_t j = j_begin; j < j_end; j += kNr)
        for (std::int64_t i = i_begin; i < i_end; i += kMr)
          micro_kernel(a + i * a_row + p0 * a_p, a_row, a_p, bp + j * k + p0 * kNr, kc, c + i * ldc + j, ldc,
                       std::min(kMr, m - i), std::min(kNr, n - j), alpha, first ? beta : 1.0f, first && beta == 0.0f);
    }
  }
}

std::int64_t tile_count(std::int64_t m, std::int64_t n) {
  return (round_up(m, kMr) + kTileRows - 1) / kTileRows * ((round_up(n, kNr) + kTileCols - 1) / kTileCols);
}

// Fills c = beta c for an empty sum (k = 0).
void scale_c(std::int64_t m, std::int64_t n, float beta, float* c, std::int64_t ldc) {
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}
}  // namespace

void packed_sgemm_prepacked(ThreadPool& pool, bool trans_a, std::int64_t m, std::int64_t n, std::int64_t k,
                            float alpha, const float* a, std::int64_t lda, const float* bp, float beta, float* c,
                            std::int64_t ldc) {
  TROUPE_CHECK(cpu_has_avx512f(), "the packed f32 product needs a CPU with AVX-512F");
  if (m == 0 || n == 0) return;
  if (k == 0) return scale_c(m, n, beta, c, ldc);
  pool.parallel_for(tile_count(m, n), [&](std::int64_t t0, std::int64_t t1) {
    run_tiles(t0, t1, trans_a, m, n, k, alpha, a, lda, bp, beta, c, ldc);
  });
}

void packed_sgemm_prepacked_serial(bool trans_a, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                                   const float* a, std::int64_t lda, const float* bp, float beta, float* c,
                                   std::int64_t ldc) {
  TROUPE_CHECK(cpu_has_avx512f(), "the packed f32 product needs a CPU with AVX-512F");
  if (m == 0 || n == 0) return;
  if (k == 0) return scale_c(m, n, beta, c, ldc);
  run_tiles(0, tile_count(m, n), trans_a, m, n, k, alpha, a, lda, bp, beta, c, ldc);
}

}  // namespace troupe
