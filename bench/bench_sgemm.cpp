// Times troupe's packed f32 product (runtime/cpu/packed_sgemm.h) beside OpenBLAS's sgemm in the fixed row
// blocks CpuBackend used before it, at every product of a GPT training step, on the same threads, alternately;
// prints GFLOP/s, the ratio and the largest difference between the two results (relative to the largest |c|).
//
//   build/bench/troupe_bench_sgemm [--threads N] [--width C] [--rows B*T] [--reps R]
//
// Shapes for width C and B*T rows (the linear layers, as CpuBackend::linear_forward/backward call them):
// forward y = x w^T (qkv C->3C, proj C->C, fc C->4C, fc_proj 4C->C, head C->256), backward dx = dy w and
// dw = dy^T x of the same layers.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench/product_comparison.h"
#include "runtime/cpu/cpu_backend.h"

using namespace troupe;

int main(int argc, char** argv) {
  bench::ProductFlags flags;
  if (!bench::parse_product_flags(argc, argv, "troupe_bench_sgemm", flags)) return 2;
  if (!cpu_has_avx512f()) {
    std::printf("troupe_bench_sgemm: this CPU has no AVX-512F; f32 products run on OpenBLAS only\n");
    return 0;
  }
  CpuBackend be(flags.threads);
  bench::ProductComparison table("blas", "packed");
  double worst = 0;
  for (const bench::Product& p : bench::gpt_products(flags)) {
    std::vector<float> a(static_cast<std::size_t>(p.m * p.k)), b(static_cast<std::size_t>(p.k * p.n)),
        out(static_cast<std::size_t>(p.m * p.n)), ref(out.size());
    std::uint32_t state = 12345;
    auto next = [&state] {  // xorshift: values in [-1, 1)
      state ^= state << 13, state ^= state >> 17, state ^= state << 5;
      return static_cast<float>(state >> 8) / 8388608.0f - 1.0f;
    };
    for (float& v : a) v = next();
    for (float& v : b) v = next();
    table.row(p, bench::time_alternately(
                     flags.reps,
                     [&] {
                       be.set_f32_kernel(F32Kernel::blas);
                       be.gemm(p.trans_a, p.trans_b, p.m, p.n, p.k, 1.0f, a.data(), p.lda(), b.data(), p.ldb(), 0.0f,
                               ref.data(), p.n);
                     },
                     [&] {
                       be.set_f32_kernel(F32Kernel::packed);
                       be.gemm(p.trans_a, p.trans_b, p.m, p.n, p.k, 1.0f, a.data(), p.lda(), b.data(), p.ldb(), 0.0f,
                               out.data(), p.n);
                     }));
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
      diff = std::max(diff, static_cast<double>(std::abs(out[i] - ref[i])));
      scale = std::max(scale, static_cast<double>(std::abs(ref[i])));
    }
    worst = std::max(worst, diff / scale);
  }
  table.total(be.threads(), flags);
  std::printf("largest |packed - blas| / max |c| over all products: %.3g\n", worst);
  return 0;
}
