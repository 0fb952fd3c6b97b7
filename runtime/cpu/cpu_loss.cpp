// CPU cross-entropy over logits rows: fused log-softmax, per-row losses, and the gradient.
#include <cmath>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/vec_math.h"

namespace troupe {

double CpuBackend::cross_entropy_forward(const Tensor& logits, const Tensor& targets, const Tensor& probs,
                                         const Tensor& losses) {
  const std::int64_t v = logits.dim(-1), rows = logits.numel() / v;
  TROUPE_CHECK(targets.numel() == rows && probs.numel() == logits.numel() && losses.numel() == rows,
               "cross-entropy shapes ", shape_str(logits.shape()), " targets ", shape_str(targets.shape()));
  const float* lp = logits.f32();
  const std::int32_t* tp = targets.i32();
  float* pp = probs.f32();
  float* lossp = losses.f32();
  for (std::int64_t r = 0; r < rows; ++r)
    if (tp[r] < 0 || tp[r] >= v)
      throw Error(ErrorKind::kInput, "target class " + std::to_string(tp[r]) + " at row " + std::to_string(r) +
                                         " is outside [0, " + std::to_string(v) + ")");
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* in = lp + r * v;
      float* out = pp + r * v;
      const float target_logit = in[tp[r]];  // read first: probs may overwrite logits in place
      const float mx = cpu::row_max(in, v);
      cpu::exp_shifted(in, out, v, mx);
      const float sum = cpu::row_sum(out, v);
      cpu::scale_row(out, v, 1.0f / sum);
      // -log softmax[target] = logsumexp - logit[target], computed without the rounded probability.
      lossp[r] = static_cast<float>(std::log(static_cast<double>(sum)) + mx - target_logit);
    }
  }, 8);
  double total = 0.0;
  for (std::int64_t r = 0; r < rows; ++r) total += lossp[r];
  return total;
}

void CpuBackend::cross_entropy_backward(const Tensor& probs, const Tensor& targets, float scale,
                                        const Tensor& dlogits) {
  const std::int64_t v = probs.dim(-1), rows = probs.numel() / v;
  const float* pp = probs.f32();
  const std::int32_t* tp = targets.i32();
  float* dp = dlogits.f32();
  pool_->parallel_for(rows, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* p = pp + r * v;
      float* g = dp + r * v;
      for (std::int64_t j = 0; j < v; ++j) g[j] = p[j] * scale;
      g[tp[r]] -= scale;
    }
  }, 8);
}

}  // namespace troupe
