// Owns the bf16 matrix-product tests: rounding as c10::BFloat16, the vdpbf16ps kernel and the portable one
// against a double reference on bf16-rounded operands, the two kernels against each other, bf16 linear
// layers (deterministic mode included), and the model-FLOP arithmetic.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "runtime/cpu/bf16_gemm.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/cpu_peak.h"
#include "runtime/model_flops.h"
#include "tests/gemm_cases.h"
#include "tests/reference_ops.h"

using namespace troupe;
using gemm_test::random_floats;

namespace {

// The sgemm CpuBackend passes to the portable kernel.
void backend_gemm(void* be, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                  const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                  std::int64_t ldc) {
  static_cast<CpuBackend*>(be)->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

std::vector<Bf16Kernel> kernels_here() {
  std::vector<Bf16Kernel> k = {Bf16Kernel::portable};
  if (cpu_has_avx512_bf16()) k.push_back(Bf16Kernel::avx512);
  return k;
}

}  // namespace

TEST_CASE("bf16 rounding is to nearest, ties to even, as c10::BFloat16", "[bf16]") {
  auto bits = [](std::uint32_t u) { return bf16_bits(std::bit_cast<float>(u)); };
  CHECK(bits(0x3f800000u) == 0x3f80);  // 1.0 exactly
  CHECK(bits(0x3f807fffu) == 0x3f80);  // below half: down
  CHECK(bits(0x3f808000u) == 0x3f80);  // a tie, even below: down
  CHECK(bits(0x3f818000u) == 0x3f82);  // a tie, odd below: up to even
  CHECK(bits(0x3f808001u) == 0x3f81);  // above half: up
  CHECK(bits(0xbf818000u) == 0xbf82);  // the sign does not matter
  CHECK(bits(0x7f7fffffu) == 0x7f80);  // the largest float rounds to infinity, as in torch
  CHECK(bits(0x7f800000u) == 0x7f80);  // infinity stays
  CHECK(bits(0x7fa00000u) == 0x7fc0);  // NaN: the quiet NaN
  CHECK(bits(0x00000001u) == 0x0000);  // the smallest subnormal: to zero
  CHECK(round_to_bf16(1.0f + 1.0f / 256) == 1.0f);       // 1 + 2^-8: a tie, 1.0 is even
  CHECK(round_to_bf16(1.0f + 3.0f / 256) == 1.015625f);  // 1 + 3 * 2^-8: a tie, up to 1 + 2^-6
}

TEST_CASE("bf16 products equal a double product of the bf16-rounded operands, every transpose, both kernels",
          "[bf16]") {
  // Edges of the 8 x 32 micro-kernel and 64 x 128 tiles, odd k (a half pair), k = 0, and GPT-sized shapes.
  const std::vector<gemm_test::Mnk> shapes = {{1, 1, 1},     {1, 7, 33},     {7, 1, 33},    {9, 33, 1},    {8, 32, 2},
                                              {65, 129, 31}, {130, 70, 256}, {5, 3, 0},     {256, 768, 64}, {31, 17, 1000}};
  CpuBackend be(2);
  std::mt19937_64 rng(17);
  for (const Bf16Kernel kernel : kernels_here()) {
    for (const gemm_test::Mnk& s : shapes) {
      for (int combo = 0; combo < 8; ++combo) {
        const gemm_test::GemmCase g = gemm_test::gemm_case(rng, s, combo);
        std::vector<float> c = g.c0;
        gemm_bf16(kernel, be.pool(), g.ta, g.tb, s.m, s.n, s.k, g.alpha, g.a.data(), g.lda, g.b.data(), g.ldb, g.beta,
                  c.data(), s.n, backend_gemm, &be);
        INFO((kernel == Bf16Kernel::avx512 ? "avx512 " : "portable ") << g.str());
        // f32 sums of exact products: at most k roundings of 2^-24 each, relative to the sum of |terms|.
        CHECK(gemm_test::worst_in_bounds(g, c, 2, [](float v) { return double(round_to_bf16(v)); }) <= 1.0);
      }
    }
  }
}

TEST_CASE("the vdpbf16ps kernel and the portable one agree to f32 rounding", "[bf16]") {
  if (!cpu_has_avx512_bf16()) {
    WARN("this CPU has no AVX512-BF16: only the portable kernel runs here");
    return;
  }
  CpuBackend be(2);
  std::mt19937_64 rng(5);
  const std::int64_t m = 96, n = 200, k = 300;
  const std::vector<float> a = random_floats(rng, m * k), b = random_floats(rng, k * n);
  std::vector<float> fast(m * n), portable(m * n);
  gemm_bf16(Bf16Kernel::avx512, be.pool(), false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, fast.data(), n,
            backend_gemm, &be);
  gemm_bf16(Bf16Kernel::portable, be.pool(), false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f,
            portable.data(), n, backend_gemm, &be);
  const double worst = gemm_test::worst_difference(fast, portable);
  CHECK(worst < 1e-4);  // terms below 1 in size, 300 of them: f32 sums in two orders differ by ~1e-5
  CHECK(worst > 0.0);   // ... and they are two different sums (this test compares two kernels, not one)
}

TEST_CASE("bf16 linear layers: rows independent of the call and of the thread count, deterministic sums exact",
          "[bf16]") {
  std::mt19937_64 rng(3);
  const std::int64_t rows = 64, in = 48, out = 40, sample = 16;
  const Tensor x = ref::to_tensor({rows, in}, ref::random_vec(rng, rows * in, -1.0, 1.0));
  const Tensor w = ref::to_tensor({out, in}, ref::random_vec(rng, out * in, -1.0, 1.0));
  const Tensor bias = ref::to_tensor({out}, ref::random_vec(rng, out, -1.0, 1.0));
  const Tensor dy = ref::to_tensor({rows, out}, ref::random_vec(rng, rows * out, -1.0, 1.0));
  for (const Bf16Kernel kernel : kernels_here()) {
    auto run = [&](int threads, bool deterministic, std::int64_t first, std::int64_t count) {
      CpuBackend be(threads);
      be.set_precision(Precision::bf16);
      be.set_bf16_kernel(kernel);
      be.set_deterministic(deterministic);
      const Tensor xs = x.slice(first, first + count), dys = dy.slice(first, first + count);
      Tensor y = Tensor::zeros({count, out}), dx = Tensor::zeros({count, in}), dw = Tensor::zeros({out, in}),
             db = Tensor::zeros({out});
      be.linear_forward(xs, w, bias, y, sample);
      be.linear_backward(dys, xs, w, dx, dw, db, sample);
      if (deterministic) {
        be.flush_exact_grad(dw);
        be.flush_exact_grad(db);
      }
      return std::vector<std::vector<float>>{y.to_vector(), dx.to_vector(), dw.to_vector(), db.to_vector()};
    };
    INFO((kernel == Bf16Kernel::avx512 ? "avx512" : "portable"));
    const auto one = run(1, true, 0, rows), two = run(2, true, 0, rows);
    CHECK(one == two);
    // The first two samples alone: their rows of y and dx are the same bits as in the whole batch.
    const auto part = run(2, true, 0, 2 * sample);
    CHECK(std::equal(part[0].begin(), part[0].end(), one[0].begin()));
    CHECK(std::equal(part[1].begin(), part[1].end(), one[1].begin()));
    // And y is the bf16 product plus the f32 bias, not an f32 product.
    const auto f32 = [&] {
      CpuBackend be(1);
      Tensor y = Tensor::zeros({rows, out});
      be.linear_forward(x, w, bias, y, sample);
      return y.to_vector();
    }();
    CHECK(one[0] != f32);
    double want = bias.to_vector()[0];
    for (std::int64_t p = 0; p < in; ++p)
      want += double(round_to_bf16(x.to_vector()[p])) * round_to_bf16(w.to_vector()[p]);
    CHECK(one[0][0] == Approx(want).epsilon(1e-6));
  }
}

TEST_CASE("model FLOPs: the GPT, MLP, CNN and LSTM by hand, MFU", "[bf16][mfu]") {
  // C 256, L 4, V 256: 12 * 4 * 256^2 + 256 * 256 = 3,145,728 + 65,536 = 3,211,264 weights in products.
  CHECK(gpt_matmul_weights(4, 256, 256) == 3'211'264.0);
  // 6 * 3,211,264 + 12 * 4 * 256 * 128 = 19,267,584 + 1,572,864 = 20,840,448 FLOPs per token.
  CHECK(gpt_train_flops_per_token(4, 256, 128, 256) == 20'840'448.0);
  // GPT-2 small (L 12, C 768, V 50304, T 1024): 6 * (84,934,656 + 38,633,472) + 12 * 12 * 768 * 1024
  // = 741,408,768 + 113,246,208 = 854,654,976.
  CHECK(gpt_train_flops_per_token(12, 768, 1024, 50304) == 854'654'976.0);
  // 784-1024-1024-10: 6 * (802,816 + 1,048,576 + 10,240) = 11,169,792 per sample.
  CHECK(dense_train_flops_per_sample({784, 1024, 1024, 10}) == 11'169'792.0);
  ModelConfig mlp;
  mlp.kind = ModelKind::mlp;
  CHECK(train_flops_per_unit(mlp) == 11'169'792.0);
  ModelConfig gpt;
  CHECK(train_flops_per_unit(gpt) == 20'840'448.0);  // the defaults: L 4, C 256, T 128, V 256
  // The default CNN (16, 32, 64 channels, a block each, 28 x 28): multiply-adds of the stem 9*16*784 =
  // 112,896; block 0 (28 x 28) 2 * 9*16*16*784 = 3,612,672; block 1 (14 x 14) 9*16*32*196 + 9*32*32*196 +
  // 16*32*196 = 2,809,856; block 2 (7 x 7) 9*32*64*49 + 9*64*64*49 + 32*64*49 = 2,809,856; fc 640: 9,345,920.
  ModelConfig cnn;
  cnn.kind = ModelKind::cnn;
  CHECK(train_flops_per_unit(cnn) == 6.0 * 9'345'920.0);
  // A stride-2 stem: 14 x 14, then 14, 7, 4.
  CHECK(cnn_train_flops_per_sample({8}, {1}, 28, 2, 10) == 6.0 * (9 * 8 * 196 + 2 * 9 * 8 * 8 * 196 + 8 * 10));
  CHECK(cnn_train_flops_per_sample({8, 8}, {1, 1}, 28, 1, 10) ==
        6.0 * (9 * 8 * 784 + 2 * 9 * 8 * 8 * 784 + 2 * 9 * 8 * 8 * 196 + 8 * 8 * 196 + 8 * 10));
  // The default LSTM (L 4, H 256, V 256): 6 * (4 * 8 * 65,536 + 65,536) = 12,976,128 per token.
  ModelConfig lstm;
  lstm.kind = ModelKind::lstm;
  CHECK(train_flops_per_unit(lstm) == 12'976'128.0);
  ModelConfig deepfm;
  deepfm.kind = ModelKind::deepfm;
  CHECK(train_flops_per_unit(deepfm) == 0.0);  // not counted: no MFU printed
  // 7,222 tokens/s (issue 17's figure) is 150.5 GFLOP/s; on a 232 GFLOP/s peak, 64.9%.
  CHECK(model_flops_per_s(20'840'448.0, 7222.0) == Approx(150.51e9).epsilon(1e-4));
  CHECK(mfu(150.51e9, 232e9) == Approx(0.64875).epsilon(1e-4));
  CHECK(mfu(1.0, 0.0) == 0.0);
  CpuPeak peak;
  peak.f32_fma = 2.0;
  peak.bf16_dot = 4.0;
  CHECK(peak.peak(Precision::f32) == 2.0);
  CHECK(peak.peak(Precision::bf16) == 4.0);
  peak.bf16_dot = 0.0;  // no AVX512-BF16: bf16 runs on the f32 units
  CHECK(peak.peak(Precision::bf16) == 2.0);
}
