// CPU matrix products: sgemm split over the thread pool, and the Linear layer's forward and backward (f32 or bf16).
#include <cblas.h>

#include <algorithm>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/ordered_products.h"

namespace troupe {

void sgemm_serial(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                  const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                  std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

namespace {
// Products are cut into blocks of a fixed size, whatever the thread count, and each block is one BLAS
// call. BLAS picks its kernel by the call's shape, so fixed blocks make every output element's
// rounding independent of the thread count, and of how a batch is cut into micro-batches of whole
// 128-row samples.
constexpr std::int64_t kRowBlock = 128;
constexpr std::int64_t kColBlock = 256;
constexpr std::int64_t kSmallProduct = 1 << 17;  // multiply-adds below which one call does it all

std::int64_t blocks(std::int64_t n, std::int64_t block) { return (n + block - 1) / block; }
}  // namespace

void CpuBackend::gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                      const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                      std::int64_t ldc) {
  if (f32_kernel_ == F32Kernel::packed) {
    packed_sgemm(*pool_, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (m * n * k < kSmallProduct) {
    sgemm_serial(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (m >= 2 * kRowBlock || n < 2 * kColBlock) {
    // Rows of c: row i of op(a) is row i of a, or column i of a when transposed.
    pool_->parallel_for(blocks(m, kRowBlock), [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t blk = b0; blk < b1; ++blk) {
        const std::int64_t i0 = blk * kRowBlock, rows = std::min(kRowBlock, m - i0);
        const float* ai = trans_a ? a + i0 : a + i0 * lda;
        sgemm_serial(trans_a, trans_b, rows, n, k, alpha, ai, lda, b, ldb, beta, c + i0 * ldc, ldc);
      }
    });
  } else {
    // Columns of c: column j of op(b) is column j of b, or row j of b when transposed.
    pool_->parallel_for(blocks(n, kColBlock), [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t blk = b0; blk < b1; ++blk) {
        const std::int64_t j0 = blk * kColBlock, cols = std::min(kColBlock, n - j0);
        const float* bj = trans_b ? b + j0 * ldb : b + j0;
        sgemm_serial(trans_a, trans_b, m, cols, k, alpha, a, lda, bj, ldb, beta, c + j0, ldc);
      }
    });
  }
}

void CpuBackend::matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c, float alpha,
                        float beta) {
  TROUPE_CHECK(a.ndim() == 2 && b.ndim() == 2 && c.ndim() == 2, "matmul needs 2-D tensors");
  std::int64_t m = trans_a ? a.dim(1) : a.dim(0), k = trans_a ? a.dim(0) : a.dim(1);
  std::int64_t kb = trans_b ? b.dim(1) : b.dim(0), n = trans_b ? b.dim(0) : b.dim(1);
  TROUPE_CHECK(k == kb && c.dim(0) == m && c.dim(1) == n, "matmul shapes ", shape_str(a.shape()), " x ",
               shape_str(b.shape()), " -> ", shape_str(c.shape()));
  gemm(trans_a, trans_b, m, n, k, alpha, a.f32(), a.dim(1), b.f32(), b.dim(1), beta, c.f32(), c.dim(1));
}

// Deterministic mode's linear products. OpenBLAS picks its kernel by the call's shape (its small-matrix
// kernels round differently from its large ones), so a slice of a product computed alone need not have
// the whole product's bits. These loops compute every output element by the same code whatever the
// shape: its own terms added in a fixed order, depending only on the length of the sum. A column-
// parallel shard's outputs, and a split weight's gradient, then have the single device's bits
// (runtime/cpu/ordered_products.h).

void CpuBackend::ordered_gemm(bool trans_b, std::int64_t rows, std::int64_t n, std::int64_t k, const float* a,
                              const float* b, bool accumulate, float* c) {
  if (trans_b) {  // b is [n, k]: an ordered dot product per element, 4 x 4 outputs sharing their loads
    pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
      float tile[16];
      std::int64_t r = r0;
      const auto rows_at = [&](auto rows_c) {
        constexpr int R = decltype(rows_c)::value;
        std::int64_t j = 0;
        for (; j + 4 <= n; j += 4) {
          cpu::ordered_dot_tile<R, 4>(a + r * k, k, b + j * k, k, k, tile);
          for (int t = 0; t < R; ++t)
            for (int u = 0; u < 4; ++u) {
              float& y = c[(r + t) * n + j + u];
              y = (accumulate ? y : 0.0f) + tile[t * 4 + u];
            }
        }
        for (; j < n; ++j) {
          cpu::ordered_dot_tile<R, 1>(a + r * k, k, b + j * k, k, k, tile);
          for (int t = 0; t < R; ++t) {
            float& y = c[(r + t) * n + j];
            y = (accumulate ? y : 0.0f) + tile[t];
          }
        }
      };
      for (; r + 4 <= r1; r += 4) rows_at(std::integral_constant<int, 4>{});
      for (; r < r1; ++r) rows_at(std::integral_constant<int, 1>{});
    }, 4);
    return;
  }
  // b is [k, n]: element j sums a[r, i] b[i, j] for i = 0, 1, ... in order.
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    if (!accumulate) {
      cpu::ordered_product_kn(r0, r1, n, k, a, k, 1, b, n, c, n);
      return;
    }
    std::vector<float> sum(static_cast<std::size_t>(4 * n));
    for (std::int64_t r = r0; r < r1; r += 4) {
      const std::int64_t r_end = std::min(r + 4, r1);
      cpu::ordered_product_kn(0, r_end - r, n, k, a + r * k, k, 1, b, n, sum.data(), n);
      for (std::int64_t t = r; t < r_end; ++t)
        for (std::int64_t j = 0; j < n; ++j) c[t * n + j] += sum[static_cast<std::size_t>((t - r) * n + j)];
    }
  }, 4);
}

// product[o, i] = sum over r of dy[r, o] x[r, i], r = 0, 1, ... in order: the [k, n] product with
// a = dy transposed (a[o, r] at dy[r * out + o]) and b = x.
void CpuBackend::ordered_weight_product(std::int64_t out, std::int64_t in, std::int64_t rows, const float* dy,
                                        const float* x, float* product) {
  pool_->parallel_for(out, [&](std::int64_t o0, std::int64_t o1) {
    cpu::ordered_product_kn(o0, o1, in, rows, dy, 1, out, x, in, product, in);
  }, 4);
}

void CpuBackend::linear_product(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                                const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                                std::int64_t ldc) {
  if (precision_ == Precision::f32) {
    gemm(trans_a, trans_b, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  auto f32_gemm = [](void* self, bool ta, bool tb, std::int64_t m_, std::int64_t n_, std::int64_t k_, float alpha_,
                     const float* a_, std::int64_t lda_, const float* b_, std::int64_t ldb_, float beta_, float* c_,
                     std::int64_t ldc_) {
    static_cast<CpuBackend*>(self)->gemm(ta, tb, m_, n_, k_, alpha_, a_, lda_, b_, ldb_, beta_, c_, ldc_);
  };
  gemm_bf16(bf16_kernel_, *pool_, trans_a, trans_b, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc, f32_gemm, this);
}

void CpuBackend::rows_gemm(bool trans_b, std::int64_t rows, std::int64_t n, std::int64_t k, const float* a,
                           const float* b, float beta, float* c, std::int64_t row_block) {
  const std::int64_t ldb = trans_b ? k : n;
  std::vector<float> a_bf16, b_bf16;
  if (precision_ == Precision::bf16) {
    if (bf16_kernel_ == Bf16Kernel::avx512) {
      // Each element of c is one accumulator over k, whatever rows share the call: no per-sample split needed.
      linear_product(false, trans_b, rows, n, k, a, k, b, ldb, beta, c, n);
      return;
    }
    // The portable kernel: operands rounded once, then the f32 products below (per sample when deterministic).
    a_bf16 = bf16_rounded_copy(*pool_, a, rows, k, k);
    b_bf16 = bf16_rounded_copy(*pool_, b, trans_b ? n : k, trans_b ? k : n, ldb);
    a = a_bf16.data();
    b = b_bf16.data();
  }
  if (!deterministic_ || row_block <= 0 || row_block >= rows) {
    gemm(false, trans_b, rows, n, k, 1.0f, a, k, b, ldb, beta, c, n);
    return;
  }
  TROUPE_CHECK(rows % row_block == 0, "rows ", rows, " not a multiple of the sample length ", row_block);
  pool_->parallel_for(rows / row_block, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t blk = b0; blk < b1; ++blk)
      sgemm_serial(false, trans_b, row_block, n, k, 1.0f, a + blk * row_block * k, k, b, ldb, beta,
                   c + blk * row_block * n, n);
  });
}

void CpuBackend::linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                                std::int64_t row_block) {
  const std::int64_t in = w.dim(1), out = w.dim(0), rows = x.numel() / in;
  TROUPE_CHECK(x.numel() == rows * in && y.numel() == rows * out, "linear ", shape_str(x.shape()), " @ ",
               shape_str(w.shape()), "^T -> ", shape_str(y.shape()));
  const float* xp = x.f32();
  const float* wp = w.f32();
  float* yp = y.f32();
  const float* bp = bias.defined() ? bias.f32() : nullptr;
  // Bias first, then the product accumulates onto it (one pass over y fewer than adding it after).
  pool_->parallel_for(bp ? rows : 0, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) std::copy(bp, bp + out, yp + r * out);
  }, 64);
  // Deterministic f32 products are the fixed-order loops; bf16's kernel already sums each element in one
  // fixed order whatever the call's shape.
  if (deterministic_ && precision_ == Precision::f32) ordered_gemm(true, rows, out, in, xp, wp, bp != nullptr, yp);
  else rows_gemm(true, rows, out, in, xp, wp, bp ? 1.0f : 0.0f, yp, row_block);
}

void CpuBackend::linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& dx,
                                 const Tensor& dw, const Tensor& dbias, std::int64_t row_block) {
  const std::int64_t in = w.dim(1), out = w.dim(0), rows = x.numel() / in;
  TROUPE_CHECK(dy.numel() == rows * out && dw.numel() == out * in, "linear backward shapes");
  const float* dyp = dy.f32();
  const float* xp = x.f32();
  const bool ordered = deterministic_ && precision_ == Precision::f32;
  if (dx.defined()) {
    if (ordered) ordered_gemm(false, rows, in, out, dyp, w.f32(), false, dx.f32());
    else rows_gemm(false, rows, in, out, dyp, w.f32(), 0.0f, dx.f32(), row_block);
  }

  if (deterministic_) {
    // Exact sums (see Backend::set_deterministic): one product per sample, added to dw's accumulator.
    const std::int64_t block = row_block > 0 ? row_block : rows;
    TROUPE_CHECK(rows % block == 0, "rows ", rows, " not a multiple of the sample length ", block);
    std::span<ExactSum> acc = exact_grad(dw);
    std::vector<float> product(static_cast<std::size_t>(out * in));
    for (std::int64_t r = 0; r < rows; r += block) {
      if (ordered) ordered_weight_product(out, in, block, dyp + r * out, xp + r * in, product.data());
      else linear_product(true, false, out, in, block, dyp + r * out, out, xp + r * in, in, 0.0f, product.data(), in);
      add_exact_parallel(acc, product.data());
    }
    if (dbias.defined()) {
      std::span<ExactSum> bacc = exact_grad(dbias);
      pool_->parallel_for(out, [&](std::int64_t o0, std::int64_t o1) {
        for (std::int64_t r = 0; r < rows; ++r) add_exact(bacc.subspan(o0, o1 - o0), dyp + r * out + o0);
      }, 64);
    }
    return;
  }

  // dw += dy^T x, all rows in one product.
  linear_product(true, false, out, in, rows, dyp, out, xp, in, 1.0f, dw.f32(), in);

  if (dbias.defined()) {
    float* dbp = dbias.f32();
    pool_->parallel_for(out, [&](std::int64_t o0, std::int64_t o1) {
      for (std::int64_t r = 0; r < rows; ++r) {
        const float* row = dyp + r * out;
        for (std::int64_t o = o0; o < o1; ++o) dbp[o] += row[o];
      }
    }, 64);
  }
}

}  // namespace troupe
