// CPU row-wise normalisations: LayerNorm and softmax, forward and backward.
#include <cmath>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/vec_math.h"

namespace troupe {

void CpuBackend::layernorm_forward(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& y,
                                   const Tensor& mean, const Tensor& rstd) {
  const std::int64_t c = w.numel(), rows = x.numel() / c;
  TROUPE_CHECK(x.numel() == rows * c && y.numel() == x.numel() && mean.numel() == rows && rstd.numel() == rows,
               "layernorm shapes ", shape_str(x.shape()), " with C=", c);
  const float* xp = x.f32();
  const float* wp = w.f32();
  const float* bp = b.f32();
  float* yp = y.f32();
  float* mp = mean.f32();
  float* rp = rstd.f32();
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* row = xp + r * c;
      const float m = cpu::lane_sum(row, c) / static_cast<float>(c);
      const float sq = cpu::lane_sum_sq(row, c, m);
      const float s = 1.0f / std::sqrt(sq / static_cast<float>(c) + eps);
      float* out = yp + r * c;
      for (std::int64_t j = 0; j < c; ++j) out[j] = (row[j] - m) * s * wp[j] + bp[j];
      mp[r] = m;
      rp[r] = s;
    }
  }, 8);
}

void CpuBackend::layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean,
                                    const Tensor& rstd, const Tensor& dx, const Tensor& dw, const Tensor& db) {
  const std::int64_t c = w.numel(), rows = x.numel() / c;
  const float* dyp = dy.f32();
  const float* xp = x.f32();
  const float* wp = w.f32();
  const float* mp = mean.f32();
  const float* rp = rstd.f32();
  float* dxp = dx.f32();
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* g = dyp + r * c;
      const float* row = xp + r * c;
      const float m = mp[r], s = rp[r];
      // Both sums in the lanes of cpu::lane_sum, so that the loop vectorises.
      float lane_dn[cpu::kLanes] = {}, lane_dn_n[cpu::kLanes] = {};
      std::int64_t j0 = 0;
      for (; j0 + cpu::kLanes <= c; j0 += cpu::kLanes)
        for (int l = 0; l < cpu::kLanes; ++l) {
          const float n = (row[j0 + l] - m) * s, dn = g[j0 + l] * wp[j0 + l];
          lane_dn[l] += dn;
          lane_dn_n[l] += dn * n;
        }
      for (int l = 0; j0 + l < c; ++l) {
        const float n = (row[j0 + l] - m) * s, dn = g[j0 + l] * wp[j0 + l];
        lane_dn[l] += dn;
        lane_dn_n[l] += dn * n;
      }
      const float sum_dn = cpu::lanes_total(lane_dn), sum_dn_n = cpu::lanes_total(lane_dn_n);
      const float mean_dn = sum_dn / static_cast<float>(c), mean_dn_n = sum_dn_n / static_cast<float>(c);
      float* out = dxp + r * c;
      for (std::int64_t j = 0; j < c; ++j) {
        float n = (row[j] - m) * s;
        out[j] = (g[j] * wp[j] - mean_dn - n * mean_dn_n) * s;
      }
    }
  }, 8);
  if (deterministic_) {
    // Exact sums, one row's contribution at a time (see Backend::set_deterministic).
    std::span<ExactSum> wacc = exact_grad(dw), bacc = exact_grad(db);
    pool_->parallel_for(c, [&](std::int64_t c0, std::int64_t c1) {
      for (std::int64_t r = 0; r < rows; ++r) {
        const float* g = dyp + r * c;
        const float* row = xp + r * c;
        const float m = mp[r], s = rp[r];
        for (std::int64_t j = c0; j < c1; ++j) {
          wacc[j] = exact_add(wacc[j], to_exact(g[j] * (row[j] - m) * s));
          bacc[j] = exact_add(bacc[j], to_exact(g[j]));
        }
      }
    }, 32);
    return;
  }
  // Parameter gradients: split over columns, rows added in order.
  float* dwp = dw.f32();
  float* dbp = db.f32();
  pool_->parallel_for(c, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* g = dyp + r * c;
      const float* row = xp + r * c;
      const float m = mp[r], s = rp[r];
      for (std::int64_t j = c0; j < c1; ++j) {
        dwp[j] += g[j] * (row[j] - m) * s;
        dbp[j] += g[j];
      }
    }
  }, 32);
}

void CpuBackend::softmax_forward(const Tensor& x, const Tensor& y) {
  const std::int64_t c = x.dim(-1), rows = x.numel() / c;
  const float* xp = x.f32();
  float* yp = y.f32();
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* in = xp + r * c;
      float* out = yp + r * c;
      cpu::exp_shifted(in, out, c, cpu::row_max(in, c));
      cpu::scale_row(out, c, 1.0f / cpu::row_sum(out, c));
    }
  }, 8);
}

void CpuBackend::softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) {
  const std::int64_t c = y.dim(-1), rows = y.numel() / c;
  const float* yp = y.f32();
  const float* dyp = dy.f32();
  float* dxp = dx.f32();
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* p = yp + r * c;
      const float* g = dyp + r * c;
      float dot = 0.0f;
      for (std::int64_t j = 0; j < c; ++j) dot += p[j] * g[j];
      float* out = dxp + r * c;
      for (std::int64_t j = 0; j < c; ++j) out[j] = p[j] * (g[j] - dot);
    }
  }, 8);
}

}  // namespace troupe
