// CPU batch normalisation over channels of x[N, C, S...] (torch.nn.BatchNorm2d), forward and backward.
//
// Each channel is one task. A statistic is summed per sample in double (positions in a fixed order), and
// the per-sample sums are added exactly (runtime/exact_sum.h), so the result depends neither on the
// thread count nor on how the batch is split over micro-batches or data-parallel replicas: synchronised
// batch norm adds the replicas' exact sums (ReplicaSum) and is bitwise the single device.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/packed_sgemm.h"

namespace troupe {

namespace {
struct BnDims {
  std::int64_t n, c, s;  // samples, channels, positions per channel and sample
};

// Double sums over a float run, in 8 interleaved partial sums combined in a fixed order: the loop
// vectorises without reassociation, and the result depends only on the values.
constexpr int kLanes = 8;

double combine(const double* acc) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

double sum(const float* v, std::int64_t n) {
  double acc[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += v[i + j];
  for (; i < n; ++i) acc[i % kLanes] += v[i];
  return combine(acc);
}

double sum_sq_dev(const float* v, std::int64_t n, double mu) {
  double acc[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += (v[i + j] - mu) * (v[i + j] - mu);
  for (; i < n; ++i) acc[i % kLanes] += (v[i] - mu) * (v[i] - mu);
  return combine(acc);
}

// sum(g) and sum(g * (v - m) r). Lane j of the 8 adds g as a double, and fma(g, (v - m) r, b) with
// (v - m) r rounded to float: the scalar loop below compiled to exactly these operations, one lane at a
// time (GCC did not vectorise it); the AVX-512 loop does the 8 lanes at once, with the same bits.
__attribute__((target("avx512f"))) void sum_dy_dy_xhat_avx512(const float* g, const float* v, std::int64_t n, float m,
                                                              float r, std::int64_t& i, double* a, double* b) {
  const __m256 vm = _mm256_set1_ps(m), vr = _mm256_set1_ps(r);
  __m512d va = _mm512_setzero_pd(), vb = _mm512_setzero_pd();
  for (; i + kLanes <= n; i += kLanes) {
    const __m512d gd = _mm512_cvtps_pd(_mm256_loadu_ps(g + i));
    va = _mm512_add_pd(va, gd);
    const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(v + i), vm), vr);
    vb = _mm512_fmadd_pd(gd, _mm512_cvtps_pd(xhat), vb);
  }
  _mm512_storeu_pd(a, va);
  _mm512_storeu_pd(b, vb);
}

std::pair<double, double> sum_dy_dy_xhat(const float* g, const float* v, std::int64_t n, float m, float r) {
  double a[kLanes] = {}, b[kLanes] = {};
  std::int64_t i = 0;
  if (cpu_has_avx512f()) {
    sum_dy_dy_xhat_avx512(g, v, n, m, r, i, a, b);
  } else {
    for (; i + kLanes <= n; i += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        a[j] += g[i + j];
        b[j] += static_cast<double>(g[i + j]) * ((v[i + j] - m) * r);
      }
  }
  for (; i < n; ++i) {
    a[i % kLanes] += g[i];
    b[i % kLanes] += static_cast<double>(g[i]) * ((v[i] - m) * r);
  }
  return {combine(a), combine(b)};
}

BnDims bn_dims(const Tensor& x, const Tensor& gamma) {
  TROUPE_CHECK(x.ndim() >= 2 && x.dim(1) == gamma.numel(), "batchnorm: x ", shape_str(x.shape()), " for ",
               gamma.numel(), " channels");
  const std::int64_t n = x.dim(0), c = x.dim(1);
  return {n, c, n * c ? x.numel() / (n * c) : 0};
}

// The values counted by a statistic, as an exact sum (an integer, so any replica split adds up to it).
ExactSum exact_count(std::int64_t count) { return static_cast<ExactSum>(count) << kExactFracBits; }
std::int64_t count_of(ExactSum s) { return static_cast<std::int64_t>(s >> kExactFracBits); }

// Adds the replicas' sums in place; the last slot counts the values, so shares may differ in size.
void sum_over_replicas(ReplicaSum* replicas, std::vector<ExactSum>& sums) {
  if (replicas) replicas->sum(sums);
}
}  // namespace

void CpuBackend::batchnorm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                   const Tensor& running_mean, const Tensor& running_var, bool training,
                                   float momentum, float eps, const Tensor& y, const Tensor& mean, const Tensor& rstd,
                                   ReplicaSum* replicas) {
  const BnDims d = bn_dims(x, gamma);
  TROUPE_CHECK(y.numel() == x.numel() && beta.numel() == d.c && running_mean.numel() == d.c &&
                   running_var.numel() == d.c,
               "batchnorm shapes for x ", shape_str(x.shape()));
  TROUPE_CHECK(!training || (mean.numel() == d.c && rstd.numel() == d.c), "batchnorm: mean/rstd for ", d.c,
               " channels");
  const float* xp = x.f32();
  const float* gp = gamma.f32();
  const float* bp = beta.f32();
  float* rmp = running_mean.f32();
  float* rvp = running_var.f32();
  float* yp = y.f32();
  std::vector<double> mu(static_cast<std::size_t>(d.c)), sq(static_cast<std::size_t>(d.c));
  std::int64_t count = d.n * d.s;
  if (training) {
    // Two passes, each a sum over the whole batch (every replica's share, with `replicas`): the mean,
    // then the squared deviations from it (as torch's two-pass variance, no cancellation).
    std::vector<ExactSum> sums(static_cast<std::size_t>(d.c) + 1, 0);
    sums[d.c] = exact_count(count);
    pool_->parallel_for(d.c, [&](std::int64_t c0, std::int64_t c1) {
      for (std::int64_t c = c0; c < c1; ++c)
        for (std::int64_t n = 0; n < d.n; ++n)
          sums[c] = exact_add(sums[c], to_exact_double(sum(xp + (n * d.c + c) * d.s, d.s)));
    });
    sum_over_replicas(replicas, sums);
    count = count_of(sums[d.c]);
    TROUPE_CHECK(count > 1, "batchnorm in training mode needs more than one value per channel, got x ",
                 shape_str(x.shape()));
    for (std::int64_t c = 0; c < d.c; ++c) mu[c] = from_exact_double(sums[c]) / static_cast<double>(count);
    std::fill(sums.begin(), sums.end() - 1, 0);
    pool_->parallel_for(d.c, [&](std::int64_t c0, std::int64_t c1) {
      for (std::int64_t c = c0; c < c1; ++c)
        for (std::int64_t n = 0; n < d.n; ++n)
          sums[c] = exact_add(sums[c], to_exact_double(sum_sq_dev(xp + (n * d.c + c) * d.s, d.s, mu[c])));
    });
    sum_over_replicas(replicas, sums);
    for (std::int64_t c = 0; c < d.c; ++c) sq[c] = from_exact_double(sums[c]);
  }
  pool_->parallel_for(d.c, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t c = c0; c < c1; ++c) {
      float m = 0.0f, r = 0.0f;
      if (training) {
        const double var = sq[c] / static_cast<double>(count);
        m = static_cast<float>(mu[c]);
        r = static_cast<float>(1.0 / std::sqrt(var + eps));
        mean.f32()[c] = m;
        rstd.f32()[c] = r;
        // torch: running = momentum * batch + (1 - momentum) * running, the variance unbiased.
        const float unbiased = static_cast<float>(sq[c] / static_cast<double>(count - 1));
        rmp[c] = momentum * m + (1.0f - momentum) * rmp[c];
        rvp[c] = momentum * unbiased + (1.0f - momentum) * rvp[c];
      } else {
        m = rmp[c];
        r = 1.0f / std::sqrt(rvp[c] + eps);
      }
      // y = x * scale + shift, torch's form of gamma * (x - mean) * rstd + beta.
      const float scale = gp[c] * r, shift = bp[c] - m * scale;
      for (std::int64_t n = 0; n < d.n; ++n) {
        const float* v = xp + (n * d.c + c) * d.s;
        float* out = yp + (n * d.c + c) * d.s;
        for (std::int64_t i = 0; i < d.s; ++i) out[i] = v[i] * scale + shift;
      }
    }
  });
}

void CpuBackend::batchnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                    const Tensor& rstd, const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta,
                                    ReplicaSum* replicas) {
  const BnDims d = bn_dims(x, gamma);
  TROUPE_CHECK(dy.numel() == x.numel() && dx.numel() == x.numel() && dgamma.numel() == d.c && dbeta.numel() == d.c,
               "batchnorm backward shapes for x ", shape_str(x.shape()));
  const float* dyp = dy.f32();
  const float* xp = x.f32();
  const float* gp = gamma.f32();
  const float* mp = mean.f32();
  const float* rp = rstd.f32();
  float* dxp = dx.f32();
  std::span<ExactSum> gacc, bacc;
  if (deterministic_) {
    gacc = exact_grad(dgamma);
    bacc = exact_grad(dbeta);
  }
  // sums[c]: sum(dy), sums[C + c]: sum(dy * x_hat), exact over samples (and replicas); sums[2C]: count.
  std::vector<ExactSum> sums(2 * static_cast<std::size_t>(d.c) + 1, 0);
  sums[2 * d.c] = exact_count(d.n * d.s);
  pool_->parallel_for(d.c, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t c = c0; c < c1; ++c) {
      const float m = mp[c], r = rp[c];
      double sum_dy = 0.0, sum_dy_xhat = 0.0;
      for (std::int64_t n = 0; n < d.n; ++n) {
        const auto [s1, s2] = sum_dy_dy_xhat(dyp + (n * d.c + c) * d.s, xp + (n * d.c + c) * d.s, d.s, m, r);
        sums[c] = exact_add(sums[c], to_exact_double(s1));
        sums[d.c + c] = exact_add(sums[d.c + c], to_exact_double(s2));
        sum_dy += s1;
        sum_dy_xhat += s2;
        if (deterministic_) {
          // Each sample's contribution, exactly (see Backend::set_deterministic).
          gacc[c] = exact_add(gacc[c], to_exact(static_cast<float>(s2)));
          bacc[c] = exact_add(bacc[c], to_exact(static_cast<float>(s1)));
        }
      }
      if (!deterministic_) {
        dgamma.f32()[c] += static_cast<float>(sum_dy_xhat);
        dbeta.f32()[c] += static_cast<float>(sum_dy);
      }
    }
  });
  sum_over_replicas(replicas, sums);
  const double count = static_cast<double>(count_of(sums[2 * d.c]));
  pool_->parallel_for(d.c, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t c = c0; c < c1; ++c) {
      const float m = mp[c], r = rp[c];
      // dx = gamma rstd (dy - mean(dy) - x_hat mean(dy x_hat))
      const float k = gp[c] * r;
      const float mean_dy = static_cast<float>(from_exact_double(sums[c]) / count);
      const float mean_dy_xhat = static_cast<float>(from_exact_double(sums[d.c + c]) / count);
      for (std::int64_t n = 0; n < d.n; ++n) {
        const float* g = dyp + (n * d.c + c) * d.s;
        const float* v = xp + (n * d.c + c) * d.s;
        float* out = dxp + (n * d.c + c) * d.s;
        for (std::int64_t i = 0; i < d.s; ++i) out[i] = k * (g[i] - mean_dy - (v[i] - m) * r * mean_dy_xhat);
      }
    }
  });
}

}  // namespace troupe
