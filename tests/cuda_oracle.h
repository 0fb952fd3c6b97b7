// Owns the [cuda] tests' harness: random inputs, poisoned outputs, and a CPU-vs-GPU comparison with a per-op tolerance.
//
// Every op is run on CpuBackend (the oracle) and CudaBackend with the same fresh random inputs (uniform,
// never zero), outputs filled with NaN beforehand on both sides (an output the kernel forgets to write
// stays NaN and fails), and accumulated gradients starting from random values (so "+=" is checked, not
// "="). The error measure is max |gpu - cpu| / max |cpu|: relative to the output's scale.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cuda/cuda_backend.h"

namespace troupe::cuda_test {

struct Oracle {
  CpuBackend cpu{2};
  CudaBackend gpu{};
  std::mt19937_64 rng{20260428};

  // Uniform in [lo, hi] with |x| >= 1e-3: fresh numbers, never zeros.
  Tensor random(Shape shape, float lo = -1.0f, float hi = 1.0f) {
    Tensor t = Tensor::empty(std::move(shape));
    std::uniform_real_distribution<float> d(lo, hi);
    for (float& x : t.span_f32()) {
      do x = d(rng);
      while (std::abs(x) < 1e-3f);
    }
    return t;
  }
  Tensor random_ids(std::int64_t n, int vocab) {
    Tensor t = Tensor::empty({n}, DType::i32);
    std::uniform_int_distribution<int> d(0, vocab - 1);
    for (std::int64_t i = 0; i < n; ++i) t.i32()[i] = d(rng);
    return t;
  }
  // A host output and its device twin, both NaN.
  std::pair<Tensor, Tensor> poisoned(Shape shape) {
    Tensor h = Tensor::full(shape, std::numeric_limits<float>::quiet_NaN());
    Tensor d = gpu.empty(shape);
    gpu.fill(d, std::numeric_limits<float>::quiet_NaN());
    return {h, d};
  }
  Tensor up(const Tensor& h) { return gpu.upload(h); }
  Tensor down(const Tensor& d) { return gpu.download(d); }
};

// max |got - want| / max |want| (got downloaded first when on the GPU); infinity when got has a NaN.
inline double rel_error(Oracle& o, const Tensor& got_any, const Tensor& want) {
  const Tensor got = got_any.device().is_cpu() ? got_any : o.down(got_any);
  REQUIRE(got.numel() == want.numel());
  const std::vector<float> g = got.to_vector(), w = want.to_vector();
  double err = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(g[i]) != std::isnan(w[i])) return std::numeric_limits<double>::infinity();
    if (std::isnan(w[i])) continue;
    err = std::max(err, std::abs(static_cast<double>(g[i]) - w[i]));
    scale = std::max(scale, std::abs(static_cast<double>(w[i])));
  }
  return scale > 0.0 ? err / scale : err;
}

#define CHECK_CLOSE(oracle, got, want, tol)          \
  do {                                               \
    const double e_ = rel_error(oracle, got, want);  \
    INFO(#got << " vs " << #want << ": relative error " << e_ << ", tolerance " << (tol)); \
    CHECK(e_ <= (tol));                              \
  } while (0)

}  // namespace troupe::cuda_test
