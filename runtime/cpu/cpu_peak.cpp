// The CPU's measured peak: FMA and vdpbf16ps register loops, the best products, and their cache file.
#include "runtime/cpu/cpu_peak.h"

#include <immintrin.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "runtime/cpu/bf16_gemm.h"
#include "runtime/cpu/cpu_backend.h"

namespace troupe {

double CpuPeak::peak(Precision precision) const {
  return precision == Precision::bf16 && bf16_dot > 0.0 ? bf16_dot : f32_fma;
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) break;
    std::string name = line.substr(colon + 1);
    name.erase(0, name.find_first_not_of(" \t"));
    return name;
  }
  return "unknown";
}

namespace {

constexpr int kChains = 12;  // independent accumulators: more than latency x issue width on current cores

// FLOPs done by `iters` rounds of kChains 16-lane FMAs (2 FLOPs per lane).
__attribute__((target("avx512f"))) double fma_loop(std::int64_t iters) {
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j));
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-6f);  // stays near 1: no overflow
  for (std::int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], x, y);
  }
  __m512 sum = acc[0];
  for (int j = 1; j < kChains; ++j) sum = _mm512_add_ps(sum, acc[j]);
  volatile float sink = _mm512_reduce_add_ps(sum);  // keeps the loop
  (void)sink;
  return static_cast<double>(iters) * kChains * 16 * 2;
}

// FLOPs done by `iters` rounds of kChains vdpbf16ps (16 lanes x 2 products, 2 FLOPs each).
__attribute__((target("avx512f,avx512bw,avx512bf16"))) double bf16_loop(std::int64_t iters) {
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_setzero_ps();
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x38003800);
  for (std::int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
  }
  __m512 sum = acc[0];
  for (int j = 1; j < kChains; ++j) sum = _mm512_add_ps(sum, acc[j]);
  volatile float sink = _mm512_reduce_add_ps(sum);
  (void)sink;
  return static_cast<double>(iters) * kChains * 16 * 4;
}

bool has_avx512f() { return __builtin_cpu_supports("avx512f"); }

// Best of `reps` timings of `body` (which returns the FLOPs it did), in FLOP/s.
template <class Body>
double best_rate(int reps, Body body) {
  double best = 0.0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const double flops = body();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0.0) best = std::max(best, flops / s);
  }
  return best;
}

// The loop on every thread of the pool at once, many short rounds; each thread keeps its best round and
// the peak is the sum of those. Short rounds and a best-of make the figure the machine's, not its load's:
// on a shared machine a round that lost its core to another process is slower and is not the best.
double on_all_threads(ThreadPool& pool, double (*loop)(std::int64_t), std::int64_t iters, int rounds) {
  std::vector<double> best(static_cast<std::size_t>(pool.size()), 0.0);
  pool.parallel_for(pool.size(), [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) {
      loop(iters);  // wake the core and its wide units
      best[static_cast<std::size_t>(t)] = best_rate(rounds, [&] { return loop(iters); });
    }
  });
  double total = 0.0;
  for (double b : best) total += b;
  return total;
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

}  // namespace

CpuPeak measure_cpu_peak(int threads) {
  CpuBackend be(threads);
  CpuPeak p;
  p.cpu = cpu_model_name();
  p.threads = be.threads();
  if (!has_avx512f()) return p;  // no AVX-512: peaks unknown here, MFU is not printed
  constexpr std::int64_t kIters = 150'000;  // ~1.5 ms per round at 3-4 GHz
  constexpr int kRounds = 100;
  p.f32_fma = on_all_threads(be.pool(), fma_loop, kIters, kRounds);
  const bool bf16 = cpu_has_avx512_bf16();
  if (bf16) p.bf16_dot = on_all_threads(be.pool(), bf16_loop, kIters / 2, kRounds);

  // The products as the loops: every thread its own share at once (rows of a 2048 x 1024 x 256 product,
  // 256 rows each), best round per thread, summed.
  const std::int64_t m = 256, n = 1024, k = 256;
  const double flops = 2.0 * m * n * k;
  auto products = [&](bool bf16_kernel) {
    std::vector<double> best(static_cast<std::size_t>(be.threads()), 0.0);
    be.pool().parallel_for(be.threads(), [&](std::int64_t t0, std::int64_t t1) {
      ThreadPool alone(1);
      std::vector<float> a(static_cast<std::size_t>(m * k), 0.5f), b(static_cast<std::size_t>(n * k), 0.25f),
          c(static_cast<std::size_t>(m * n));
      auto once = [&] {
        if (bf16_kernel) {
          gemm_bf16(Bf16Kernel::avx512, alone, false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, c.data(), n,
                    nullptr, nullptr);
        } else {
          sgemm_serial(false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, c.data(), n);
        }
        return flops;
      };
      for (std::int64_t t = t0; t < t1; ++t) {
        once();
        best[static_cast<std::size_t>(t)] = best_rate(30, once);
      }
    });
    double total = 0.0;
    for (double r : best) total += r;
    return total;
  };
  p.sgemm = products(false);
  if (bf16) p.bf16_gemm = products(true);
  return p;
}

std::string cpu_peak_cache_path(const std::string& cpu, int threads) {
  namespace fs = std::filesystem;
  fs::path dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) {
    dir = fs::path(xdg) / "troupe";
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    dir = fs::path(home) / ".cache" / "troupe";
  } else {
    dir = fs::temp_directory_path() / "troupe-cache";
  }
  std::ostringstream name;
  name << "cpu-peak-" << std::hex << fnv1a(cpu) << std::dec << "-t" << threads << ".json";
  return (dir / name.str()).string();
}

CpuPeak cpu_peak(int threads, bool refresh) {
  namespace fs = std::filesystem;
  const int resolved = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::string cpu = cpu_model_name();
  const std::string path = cpu_peak_cache_path(cpu, resolved);
  if (!refresh) {
    std::ifstream in(path);
    if (in) {
      try {
        const nlohmann::json j = nlohmann::json::parse(in);
        if (j.at("cpu").get<std::string>() == cpu && j.at("threads").get<int>() == resolved) {
          CpuPeak p;
          p.cpu = cpu;
          p.threads = resolved;
          p.f32_fma = j.at("f32_fma_flops").get<double>();
          p.bf16_dot = j.at("bf16_dot_flops").get<double>();
          p.sgemm = j.at("sgemm_flops").get<double>();
          p.bf16_gemm = j.at("bf16_gemm_flops").get<double>();
          return p;
        }
      } catch (const std::exception&) {
        // A damaged or older file: measured again and rewritten below.
      }
    }
  }
  const CpuPeak p = measure_cpu_peak(resolved);
  const nlohmann::json j = {{"cpu", p.cpu},           {"threads", p.threads},      {"f32_fma_flops", p.f32_fma},
                            {"bf16_dot_flops", p.bf16_dot}, {"sgemm_flops", p.sgemm}, {"bf16_gemm_flops", p.bf16_gemm}};
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  // Written aside and renamed, so a run reading it at the same time sees the old file or the new one.
  const std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." +
                          std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
  {
    std::ofstream out(tmp);
    if (out) out << j.dump(2) << "\n";
  }
  fs::rename(tmp, path, ec);
  if (ec) fs::remove(tmp, ec);
  return p;
}

}  // namespace troupe
