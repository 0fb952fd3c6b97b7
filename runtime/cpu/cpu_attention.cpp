// CPU causal multi-head self-attention, forward and backward, one (sample, head) pair per task.
#include <cmath>
#include <vector>

#include "runtime/attention_dims.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/vec_math.h"

namespace troupe {

void CpuBackend::attention_forward(const Tensor& qkv, int n_head, const Tensor& out, const Tensor& probs) {
  const AttentionDims d = attention_dims(qkv, n_head);
  TROUPE_CHECK(out.numel() == d.batch * d.t * d.c && probs.numel() == d.batch * d.heads * d.t * d.t,
               "attention outputs ", shape_str(out.shape()), " ", shape_str(probs.shape()));
  const float scale = 1.0f / std::sqrt(static_cast<float>(d.hd));
  const float* qkvp = qkv.f32();
  float* outp = out.f32();
  float* pp = probs.f32();
  const std::int64_t T = d.t, C3 = 3 * d.c;
  pool_->parallel_for(d.batch * d.heads, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t bh = i0; bh < i1; ++bh) {
      const std::int64_t b = bh / d.heads, h = bh % d.heads;
      const float* q = qkvp + b * T * C3 + h * d.hd;
      const float* k = q + d.c;
      const float* v = q + 2 * d.c;
      float* p = pp + bh * T * T;
      sgemm_serial(false, true, T, T, d.hd, scale, q, C3, k, C3, 0.0f, p, T);
      for (std::int64_t t = 0; t < T; ++t) {
        float* row = p + t * T;
        cpu::exp_shifted(row, row, t + 1, cpu::row_max(row, t + 1));
        cpu::scale_row(row, t + 1, 1.0f / cpu::row_sum(row, t + 1));
        for (std::int64_t j = t + 1; j < T; ++j) row[j] = 0.0f;
      }
      sgemm_serial(false, false, T, d.hd, T, 1.0f, p, T, v, C3, 0.0f, outp + b * T * d.c + h * d.hd, d.c);
    }
  });
}

void CpuBackend::attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& probs, int n_head,
                                    const Tensor& dqkv) {
  const AttentionDims d = attention_dims(qkv, n_head);
  TROUPE_CHECK(dqkv.numel() == qkv.numel() && dout.numel() == d.batch * d.t * d.c, "attention backward shapes");
  const float scale = 1.0f / std::sqrt(static_cast<float>(d.hd));
  const float* qkvp = qkv.f32();
  const float* dop = dout.f32();
  const float* pp = probs.f32();
  float* dqkvp = dqkv.f32();
  const std::int64_t T = d.t, C3 = 3 * d.c;
  pool_->parallel_for(d.batch * d.heads, [&](std::int64_t i0, std::int64_t i1) {
    std::vector<float> ds(static_cast<std::size_t>(T * T));
    for (std::int64_t bh = i0; bh < i1; ++bh) {
      const std::int64_t b = bh / d.heads, h = bh % d.heads;
      const std::int64_t off = b * T * C3 + h * d.hd;
      const float* q = qkvp + off;
      const float* k = q + d.c;
      const float* v = q + 2 * d.c;
      float* dq = dqkvp + off;
      float* dk = dq + d.c;
      float* dv = dq + 2 * d.c;
      const float* p = pp + bh * T * T;
      const float* dO = dop + b * T * d.c + h * d.hd;
      // dP = dO v^T, then dS = P * (dP - rowsum(P * dP)) * scale (masked entries have P = 0).
      sgemm_serial(false, true, T, T, d.hd, 1.0f, dO, d.c, v, C3, 0.0f, ds.data(), T);
      sgemm_serial(true, false, T, d.hd, T, 1.0f, p, T, dO, d.c, 0.0f, dv, C3);
      for (std::int64_t t = 0; t < T; ++t) {
        const float* prow = p + t * T;
        float* row = ds.data() + t * T;
        float dot = 0.0f;
        for (std::int64_t j = 0; j <= t; ++j) dot += prow[j] * row[j];
        for (std::int64_t j = 0; j <= t; ++j) row[j] = prow[j] * (row[j] - dot) * scale;
        for (std::int64_t j = t + 1; j < T; ++j) row[j] = 0.0f;
      }
      sgemm_serial(false, false, T, d.hd, T, 1.0f, ds.data(), T, k, C3, 0.0f, dq, C3);
      sgemm_serial(true, false, T, d.hd, T, 1.0f, ds.data(), T, q, C3, 0.0f, dk, C3);
    }
  });
}

}  // namespace troupe
