// clip_grad_norm: a double-accumulated sum of squares over all gradients, then one scaling pass.
#include "runtime/optim/clip_grad.h"

#include <cmath>
#include <cstddef>
#include <vector>

namespace troupe {
namespace {

// Sum of squares of n floats in double. Eight independent partial sums: they break the serial
// dependency of one accumulator (an add's latency per element) and let the compiler use vector
// registers, while the order of additions stays fixed, so the result is deterministic.
double sum_squares(const float* x, std::size_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) {
      const double v = x[i + k];
      acc[k] += v * v;
    }
  for (; i < n; ++i) {
    const double v = x[i];
    acc[0] += v * v;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace

std::vector<double> grad_sum_squares(const std::vector<Param*>& params) {
  std::vector<double> out;
  for (const Param* p : params)
    if (p->grad.defined()) out.push_back(sum_squares(p->grad.f32(), static_cast<std::size_t>(p->grad.numel())));
  return out;
}

double grad_norm(const std::vector<Param*>& params) {
  double total_sq = 0.0;
  for (double s : grad_sum_squares(params)) total_sq += s;
  return std::sqrt(total_sq);
}

double clip_coefficient(double total_norm, double max_norm) {
  double coef = max_norm / (total_norm + 1e-6);
  // torch.clamp(coef, max=1.0) keeps a NaN, which std::min(coef, 1.0) would not.
  if (coef > 1.0) coef = 1.0;
  return coef;
}

void scale_grads(std::vector<Param*>& params, double coefficient) {
  const float c = static_cast<float>(coefficient);
  if (c == 1.0f) return;  // multiplying by 1.0f changes no bit: skip the pass
  for (Param* p : params) {
    if (!p->grad.defined()) continue;
    float* g = p->grad.f32();
    const std::size_t n = static_cast<std::size_t>(p->grad.numel());
    for (std::size_t i = 0; i < n; ++i) g[i] *= c;
  }
}

double clip_grad_norm(std::vector<Param*>& params, double max_norm) {
  const double total = grad_norm(params);
  scale_grads(params, clip_coefficient(total, max_norm));
  return total;
}

}  // namespace troupe
