// CPU matrix products: sgemm split over the thread pool, and the Linear layer's forward and backward.
#include <cblas.h>

#include <algorithm>

#include "runtime/cpu/cpu_backend.h"

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

void CpuBackend::gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                      const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                      std::int64_t ldc) {
  const int t = threads();
  // Small products are not worth waking the workers for.
  if (t == 1 || m * n * k < (1 << 17)) {
    sgemm_serial(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (m >= 32 * t) {
    // Rows of c: row i of op(a) is row i of a, or column i of a when transposed.
    pool_->parallel_for(m, [&](std::int64_t i0, std::int64_t i1) {
      const float* ai = trans_a ? a + i0 : a + i0 * lda;
      sgemm_serial(trans_a, trans_b, i1 - i0, n, k, alpha, ai, lda, b, ldb, beta, c + i0 * ldc, ldc);
    }, 16);
  } else {
    // Columns of c: column j of op(b) is column j of b, or row j of b when transposed.
    pool_->parallel_for(n, [&](std::int64_t j0, std::int64_t j1) {
      const float* bj = trans_b ? b + j0 * ldb : b + j0;
      sgemm_serial(trans_a, trans_b, m, j1 - j0, k, alpha, a, lda, bj, ldb, beta, c + j0, ldc);
    }, 16);
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

void CpuBackend::linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y) {
  const std::int64_t in = w.dim(1), out = w.dim(0), rows = x.numel() / in;
  TROUPE_CHECK(x.numel() == rows * in && y.numel() == rows * out, "linear ", shape_str(x.shape()), " @ ",
               shape_str(w.shape()), "^T -> ", shape_str(y.shape()));
  const float* xp = x.f32();
  const float* wp = w.f32();
  float* yp = y.f32();
  const float* bp = bias.defined() ? bias.f32() : nullptr;
  auto rows_body = [&](std::int64_t r0, std::int64_t r1) {
    if (bp)
      for (std::int64_t r = r0; r < r1; ++r) std::copy(bp, bp + out, yp + r * out);
    sgemm_serial(false, true, r1 - r0, out, in, 1.0f, xp + r0 * in, in, wp, in, bp ? 1.0f : 0.0f, yp + r0 * out, out);
  };
  if (rows * out * in < (1 << 17)) rows_body(0, rows);
  else pool_->parallel_for(rows, rows_body, 16);
}

void CpuBackend::linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& dx,
                                 const Tensor& dw, const Tensor& dbias, std::int64_t row_block) {
  const std::int64_t in = w.dim(1), out = w.dim(0), rows = x.numel() / in;
  TROUPE_CHECK(dy.numel() == rows * out && dw.numel() == out * in, "linear backward shapes");
  const float* dyp = dy.f32();
  const float* xp = x.f32();
  if (dx.defined()) gemm(false, false, rows, in, out, 1.0f, dyp, out, w.f32(), in, 0.0f, dx.f32(), in);

  // dw += dy^T x, reduced block by block in row order when deterministic.
  const std::int64_t block = (deterministic_ && row_block > 0) ? row_block : rows;
  TROUPE_CHECK(rows % block == 0, "rows ", rows, " not a multiple of the sample length ", block);
  float* dwp = dw.f32();
  pool_->parallel_for(out, [&](std::int64_t o0, std::int64_t o1) {
    for (std::int64_t r = 0; r < rows; r += block)
      sgemm_serial(true, false, o1 - o0, in, block, 1.0f, dyp + r * out + o0, out, xp + r * in, in, 1.0f,
                   dwp + o0 * in, in);
  }, 16);

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
