// Times troupe's bf16 product (runtime/cpu/bf16_gemm.h) beside OpenBLAS's sgemm (CpuBackend::gemm) at every
// product of a GPT training step, on the same threads, alternately, and prints GFLOP/s and the ratio.
//
//   build/bench/troupe_bench_bf16_gemm [--threads N] [--width C] [--rows B*T] [--reps R]
//
// Shapes for width C and B*T rows (the linear layers, as CpuBackend::linear_forward/backward call them):
// forward y = x w^T (qkv C->3C, proj C->C, fc C->4C, fc_proj 4C->C, head C->256), backward dx = dy w and
// dw = dy^T x of the same layers.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "runtime/cpu/bf16_gemm.h"
#include "bench/product_comparison.h"
#include "runtime/cpu/cpu_backend.h"

using namespace troupe;

int main(int argc, char** argv) {
  bench::ProductFlags flags;
  if (!bench::parse_product_flags(argc, argv, "troupe_bench_bf16_gemm", flags)) return 2;
  if (!cpu_has_avx512_bf16()) {
    std::printf("troupe_bench_bf16_gemm: this CPU has no AVX512-BF16; the portable bf16 kernel is sgemm on rounded copies\n");
    return 0;
  }
  CpuBackend be(flags.threads);
  bench::ProductComparison table("sgemm", "bf16");
  for (const bench::Product& p : bench::gpt_products(flags)) {
    std::vector<float> a(static_cast<std::size_t>(p.m * p.k), 0.5f), b(static_cast<std::size_t>(p.k * p.n), 0.25f),
        out(static_cast<std::size_t>(p.m * p.n));
    table.row(p, bench::time_alternately(
                     flags.reps,
                     [&] {
                       be.gemm(p.trans_a, p.trans_b, p.m, p.n, p.k, 1.0f, a.data(), p.lda(), b.data(), p.ldb(), 0.0f,
                               out.data(), p.n);
                     },
                     [&] {
                       gemm_bf16(Bf16Kernel::avx512, be.pool(), p.trans_a, p.trans_b, p.m, p.n, p.k, 1.0f, a.data(),
                                 p.lda(), b.data(), p.ldb(), 0.0f, out.data(), p.n, nullptr, nullptr);
                     }));
  }
  table.total(be.threads(), flags);
  return 0;
}
