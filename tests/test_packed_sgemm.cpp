// Owns the tests of troupe's packed f32 product: against a double reference at every transpose and edge of its
// tiles and k chunks, and an element's bits independent of the thread count and of the rows and columns that
// share the call.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/packed_sgemm.h"
#include "tests/gemm_cases.h"

using namespace troupe;

using gemm_test::random_floats;

TEST_CASE("packed sgemm equals a double product to f32 rounding, every transpose, edges of tiles and k chunks",
          "[sgemm]") {
  if (!cpu_has_avx512f()) {
    WARN("this CPU has no AVX-512F: f32 products run on OpenBLAS only");
    return;
  }
  // Edges of the 8 x 32 micro-kernel and 64 x 128 tiles, k = 0, k across several 256-term chunks, GPT shapes.
  const std::vector<gemm_test::Mnk> shapes = {{1, 1, 1},     {1, 7, 33},     {7, 1, 33},    {9, 33, 1},
                                              {8, 32, 2},    {65, 129, 31},  {130, 70, 256}, {5, 3, 0},
                                              {256, 768, 64}, {31, 17, 1000}, {17, 40, 513}};
  ThreadPool pool(2);
  std::mt19937_64 rng(29);
  for (const gemm_test::Mnk& s : shapes) {
    for (int combo = 0; combo < 8; ++combo) {
      const gemm_test::GemmCase g = gemm_test::gemm_case(rng, s, combo);
      std::vector<float> c = g.c0;
      packed_sgemm(pool, g.ta, g.tb, s.m, s.n, s.k, g.alpha, g.a.data(), g.lda, g.b.data(), g.ldb, g.beta, c.data(),
                   s.n);
      INFO(g.str());
      // f32 fused multiply-adds: at most k + 2 roundings of 2^-24 each, relative to the sum of |terms|.
      CHECK(gemm_test::worst_in_bounds(g, c, 3, [](float v) { return double(v); }) <= 1.0);
    }
  }
}

TEST_CASE("packed sgemm: an element's bits depend neither on the thread count nor on the rows and columns beside it",
          "[sgemm]") {
  if (!cpu_has_avx512f()) {
    WARN("this CPU has no AVX-512F: f32 products run on OpenBLAS only");
    return;
  }
  std::mt19937_64 rng(31);
  const std::int64_t m = 150, n = 100, k = 600;  // k spans three chunks
  const std::vector<float> a = random_floats(rng, m * k), b = random_floats(rng, k * n);
  for (int combo = 0; combo < 4; ++combo) {
    const bool ta = combo & 1, tb = combo & 2;
    const std::int64_t lda = ta ? m : k, ldb = tb ? k : n;
    auto product = [&](int threads) {
      ThreadPool pool(threads);
      std::vector<float> c(static_cast<std::size_t>(m * n));
      packed_sgemm(pool, ta, tb, m, n, k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), n);
      return c;
    };
    const std::vector<float> whole = product(1);
    INFO("ta " << ta << " tb " << tb);
    CHECK(product(2) == whole);
    CHECK(product(3) == whole);
    // Rows 37..99 and columns 45..82 alone (the sub-matrices of op(a) and op(b)), on 2 threads.
    const std::int64_t r0 = 37, rows = 63, c0 = 45, cols = 38;
    ThreadPool pool(2);
    std::vector<float> part(static_cast<std::size_t>(rows * cols));
    const float* a_part = ta ? a.data() + r0 : a.data() + r0 * lda;
    const float* b_part = tb ? b.data() + c0 * ldb : b.data() + c0;
    packed_sgemm(pool, ta, tb, rows, cols, k, 1.0f, a_part, lda, b_part, ldb, 0.0f, part.data(), cols);
    bool same = true;
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j) same = same && part[i * cols + j] == whole[(r0 + i) * n + c0 + j];
    CHECK(same);
  }
}

TEST_CASE("the packed f32 kernel and OpenBLAS's agree to f32 rounding in CpuBackend::gemm", "[sgemm]") {
  if (!cpu_has_avx512f()) {
    WARN("this CPU has no AVX-512F: f32 products run on OpenBLAS only");
    return;
  }
  CpuBackend be(2);
  CHECK(be.f32_kernel() == F32Kernel::packed);
  std::mt19937_64 rng(7);
  const std::int64_t m = 300, n = 200, k = 700;
  const std::vector<float> a = random_floats(rng, m * k), b = random_floats(rng, k * n);
  std::vector<float> packed(m * n), blas(m * n);
  be.gemm(false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, packed.data(), n);
  be.set_f32_kernel(F32Kernel::blas);
  be.gemm(false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, blas.data(), n);
  const double worst = gemm_test::worst_difference(packed, blas);
  CHECK(worst < 1e-4);  // terms below 1 in size, 700 of them: f32 sums in two orders differ by ~1e-5
  CHECK(worst > 0.0);   // ... and they are two different sums (this test compares two kernels, not one)
}
