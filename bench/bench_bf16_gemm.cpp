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
#include "bench/gpt_products.h"
#include "runtime/cpu/cpu_backend.h"

using namespace troupe;

int main(int argc, char** argv) {
  bench::ProductFlags flags;
  if (!bench::parse_product_flags(argc, argv, "troupe_bench_bf16_gemm", flags)) return 2;
  const int threads = flags.threads, reps = flags.reps;
  const std::int64_t c = flags.width, rows = flags.rows;
  if (!cpu_has_avx512_bf16()) {
    std::printf("troupe_bench_bf16_gemm: this CPU has no AVX512-BF16; the portable bf16 kernel is sgemm on rounded copies\n");
    return 0;
  }
  const std::vector<bench::Product> products = bench::gpt_products(flags);
  CpuBackend be(threads);
  std::printf("%-20s %6s %6s %6s %12s %12s %7s\n", "product", "m", "n", "k", "sgemm GF/s", "bf16 GF/s", "ratio");
  double flops_all = 0, sgemm_s = 0, bf16_s = 0;
  for (const bench::Product& p : products) {
    std::vector<float> a(static_cast<std::size_t>(p.m * p.k), 0.5f), b(static_cast<std::size_t>(p.k * p.n), 0.25f),
        out(static_cast<std::size_t>(p.m * p.n));
    const std::int64_t lda = p.trans_a ? p.m : p.k, ldb = p.trans_b ? p.k : p.n;
    const double flops = 2.0 * p.m * p.n * p.k;
    double s_sgemm = 1e30, s_bf16 = 1e30;
    for (int round = 0; round < 2; ++round) {  // alternating, so load from the rest of the machine falls on both
      s_sgemm = std::min(s_sgemm, bench::best_seconds(reps, [&] {
        be.gemm(p.trans_a, p.trans_b, p.m, p.n, p.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, out.data(), p.n);
      }));
      s_bf16 = std::min(s_bf16, bench::best_seconds(reps, [&] {
        gemm_bf16(Bf16Kernel::avx512, be.pool(), p.trans_a, p.trans_b, p.m, p.n, p.k, 1.0f, a.data(), lda, b.data(),
                  ldb, 0.0f, out.data(), p.n, nullptr, nullptr);
      }));
    }
    flops_all += flops;
    sgemm_s += s_sgemm;
    bf16_s += s_bf16;
    std::printf("%-20s %6lld %6lld %6lld %12.1f %12.1f %6.2fx\n", p.name.c_str(), static_cast<long long>(p.m),
                static_cast<long long>(p.n), static_cast<long long>(p.k), flops / s_sgemm / 1e9, flops / s_bf16 / 1e9,
                s_sgemm / s_bf16);
  }
  std::printf("%-20s %6s %6s %6s %12.1f %12.1f %6.2fx   (threads %d, width %lld, rows %lld)\n", "all, by time", "", "",
              "", flops_all / sgemm_s / 1e9, flops_all / bf16_s / 1e9, sgemm_s / bf16_s, be.threads(),
              static_cast<long long>(c), static_cast<long long>(rows));
  return 0;
}
