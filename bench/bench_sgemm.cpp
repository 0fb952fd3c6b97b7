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

#include "runtime/cpu/cpu_backend.h"

using namespace troupe;

namespace {

struct Product {
  std::string name;
  bool trans_a, trans_b;
  std::int64_t m, n, k;
};

template <class F>
double best_seconds(int reps, F f) {
  f();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::int64_t c = 256, rows = 16 * 128, vocab = 256;
  int reps = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const long long v = std::atoll(argv[i + 1]);
    if (flag == "--threads") threads = static_cast<int>(v);
    else if (flag == "--width") c = v;
    else if (flag == "--rows") rows = v;
    else if (flag == "--reps") reps = static_cast<int>(v);
    else {
      std::fprintf(stderr, "troupe_bench_sgemm: unknown option %s (--threads, --width, --rows, --reps)\n", argv[i]);
      return 2;
    }
  }
  if (!cpu_has_avx512f()) {
    std::printf("troupe_bench_sgemm: this CPU has no AVX-512F; f32 products run on OpenBLAS only\n");
    return 0;
  }
  std::vector<Product> products;
  const std::pair<const char*, std::pair<std::int64_t, std::int64_t>> layers[] = {
      {"qkv", {c, 3 * c}}, {"proj", {c, c}}, {"fc", {c, 4 * c}}, {"fc_proj", {4 * c, c}}, {"head", {c, vocab}}};
  for (const auto& [name, io] : layers) {
    const auto [in, out] = io;
    products.push_back({std::string(name) + " y=xW^T", false, true, rows, out, in});
    products.push_back({std::string(name) + " dx=dyW", false, false, rows, in, out});
    products.push_back({std::string(name) + " dW=dy^Tx", true, false, out, in, rows});
  }
  CpuBackend be(threads);
  std::printf("%-20s %6s %6s %6s %12s %12s %7s\n", "product", "m", "n", "k", "blas GF/s", "packed GF/s", "ratio");
  double flops_all = 0, blas_s = 0, packed_s = 0, worst = 0;
  for (const Product& p : products) {
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
      s_blas = std::min(s_blas, best_seconds(reps, [&] {
        be.gemm(p.trans_a, p.trans_b, p.m, p.n, p.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, ref.data(), p.n);
      }));
      be.set_f32_kernel(F32Kernel::packed);
      s_packed = std::min(s_packed, best_seconds(reps, [&] {
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
