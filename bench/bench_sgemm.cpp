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

#include "bench/gpt_products.h"
#include "runtime/cpu/cpu_backend.h"

using namespace troupe;

int main(int argc, char** argv) {
  bench::ProductFlags flags;
  if (!bench::parse_product_flags(argc, argv, "troupe_bench_sgemm", flags)) return 2;
  const int threads = flags.threads, reps = flags.reps;
  const std::int64_t c = flags.width, rows = flags.rows;
  if (!cpu_has_avx512f()) {
    std::printf("troupe_bench_sgemm: this CPU has no AVX-512F; f32 products run on OpenBLAS only\n");
    return 0;
  }
  const std::vector<bench::Product> products = bench::gpt_products(flags);
  CpuBackend be(threads);
  std::printf("%-20s %6s %6s %6s %12s %12s %7s\n", "product", "m", "n", "k", "blas GF/s", "packed GF/s", "ratio");
  double flops_all = 0, blas_s = 0, packed_s = 0, worst = 0;
  for (const bench::Product& p : products) {
    std::vector<float> a(static_cast<std::size_t>(p.m * p.k)), b(static_cast<std::size_t>(p.k * p.n)),
        out(static_cast<std::size_t>(p.m * p.n)), ref(out.size());
    std::uint32_t state = 12345;
    auto next = [&state] {  // xorshift: values in [-1, 1)
      state ^= state << 13, state ^= state >> 17, state ^= state << 5;
      return static_cast<float>(state >> 8) / 8388608.0f - 1.0f;
    };
    for (float& v : a) v = next();
    for (float& v : b) v = next();
    const std::int64_t lda = p.trans_a ? p.m : p.k, ldb = p.trans_b ? p.k : p.n;
    const double flops = 2.0 * p.m * p.n * p.k;
    double s_blas = 1e30, s_packed = 1e30;
    for (int round = 0; round < 2; ++round) {  // alternating, so load from the rest of the machine falls on both
      be.set_f32_kernel(F32Kernel::blas);
      s_blas = std::min(s_blas, bench::best_seconds(reps, [&] {
        be.gemm(p.trans_a, p.trans_b, p.m, p.n, p.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, ref.data(), p.n);
      }));
      be.set_f32_kernel(F32Kernel::packed);
      s_packed = std::min(s_packed, bench::best_seconds(reps, [&] {
        be.gemm(p.trans_a, p.trans_b, p.m, p.n, p.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, out.data(), p.n);
      }));
    }
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
      diff = std::max(diff, static_cast<double>(std::abs(out[i] - ref[i])));
      scale = std::max(scale, static_cast<double>(std::abs(ref[i])));
    }
    worst = std::max(worst, diff / scale);
    flops_all += flops;
    blas_s += s_blas;
    packed_s += s_packed;
    std::printf("%-20s %6lld %6lld %6lld %12.1f %12.1f %6.2fx\n", p.name.c_str(), static_cast<long long>(p.m),
                static_cast<long long>(p.n), static_cast<long long>(p.k), flops / s_blas / 1e9, flops / s_packed / 1e9,
                s_blas / s_packed);
  }
  std::printf("%-20s %6s %6s %6s %12.1f %12.1f %6.2fx   (threads %d, width %lld, rows %lld)\n", "all, by time", "", "",
              "", flops_all / blas_s / 1e9, flops_all / packed_s / 1e9, blas_s / packed_s, be.threads(),
              static_cast<long long>(c), static_cast<long long>(rows));
  std::printf("largest |packed - blas| / max |c| over all products: %.3g\n", worst);
  return 0;
}
