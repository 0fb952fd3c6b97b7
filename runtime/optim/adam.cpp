// Adam and AdamW: torch.optim's single-tensor updates as blocked loops over float*, bias corrections in double.
#include "runtime/optim/adam.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "runtime/optim/sqrt_block.h"
#include "runtime/optim/validate.h"

namespace troupe {
namespace {

using optim_detail::kBlock;

// The per-step scalars, each computed in double as Python does and rounded to float once, as ATen
// does when a Python number meets a float32 tensor.
struct AdamScalars {
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float weight_decay;  // Adam (L2) only
  float decay;         // AdamW: 1 - lr * weight_decay
  float bias_correction2_sqrt, eps, neg_step_size;
};

// kL2: Adam with weight_decay != 0 (added to the gradient). kDecoupled: AdamW.
// Blocked in two passes so that the square roots of a block go through sqrt_inplace (vectorised).
template <bool kL2, bool kDecoupled>
void adam_kernel(float* __restrict w, const float* __restrict g, float* __restrict m, float* __restrict v,
                 std::size_t n, const AdamScalars& k) {
  alignas(64) float denom[kBlock];
  for (std::size_t begin = 0; begin < n; begin += kBlock) {
    const std::size_t len = std::min(kBlock, n - begin);
    for (std::size_t j = 0; j < len; ++j) {
      const std::size_t i = begin + j;
      float gi = g[i];
      if constexpr (kL2) gi = gi + k.weight_decay * w[i];  // grad = grad.add(param, alpha=weight_decay)
      float mi = m[i] * k.beta1;                           // exp_avg.mul_(beta1)
      m[i] = mi + k.one_minus_beta1 * gi;                  //        .add_(grad, alpha=1 - beta1)
      float vi = v[i] * k.beta2;                           // exp_avg_sq.mul_(beta2)
      vi = vi + k.one_minus_beta2 * gi * gi;               //           .addcmul_(grad, grad, value=1 - beta2)
      v[i] = vi;
      denom[j] = vi;
    }
    optim_detail::sqrt_inplace(denom, len);  // exp_avg_sq.sqrt()
    for (std::size_t j = 0; j < len; ++j) {
      const std::size_t i = begin + j;
      const float d = denom[j] / k.bias_correction2_sqrt + k.eps;  // (... / bias_correction2_sqrt).add_(eps)
      float wi = w[i];
      // AdamW's param.mul_(1 - lr * wd) comes first in PyTorch; per element, doing it here is the same.
      if constexpr (kDecoupled) wi = wi * k.decay;
      w[i] = wi + k.neg_step_size * m[i] / d;  // param.addcdiv_(exp_avg, denom, value=-step_size)
    }
  }
}

class Adam final : public Optimizer {
 public:
  explicit Adam(const AdamOptions& o) : Optimizer(o.lr), o_(o) {}
  std::string_view kind() const override { return o_.decoupled ? "adamw" : "adam"; }

 protected:
  void update(Param& p, ParamState& s, double lr) override {
    float* m = state_zeros(s, "exp_avg", p).f32();
    float* v = state_zeros(s, "exp_avg_sq", p).f32();
    const double t = static_cast<double>(s.step);
    const double bias_correction1 = 1.0 - std::pow(o_.beta1, t);
    const double bias_correction2 = 1.0 - std::pow(o_.beta2, t);
    AdamScalars k;
    k.beta1 = static_cast<float>(o_.beta1);
    k.one_minus_beta1 = static_cast<float>(1.0 - o_.beta1);
    k.beta2 = static_cast<float>(o_.beta2);
    k.one_minus_beta2 = static_cast<float>(1.0 - o_.beta2);
    k.weight_decay = static_cast<float>(o_.weight_decay);
    k.decay = static_cast<float>(1.0 - lr * o_.weight_decay);
    k.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
    k.eps = static_cast<float>(o_.eps);
    k.neg_step_size = static_cast<float>(-(lr / bias_correction1));
    const std::size_t n = static_cast<std::size_t>(p.value.numel());
    float* w = p.value.f32();
    const float* g = p.grad.f32();
    if (o_.decoupled) adam_kernel<false, true>(w, g, m, v, n, k);
    else if (o_.weight_decay != 0.0) adam_kernel<true, false>(w, g, m, v, n, k);
    else adam_kernel<false, false>(w, g, m, v, n, k);
  }

 private:
  AdamOptions o_;
};

}  // namespace

std::unique_ptr<Optimizer> make_adam(const AdamOptions& o) {
  using optim_detail::require_non_negative;
  using optim_detail::require_unit_interval;
  const char* kind = o.decoupled ? "adamw" : "adam";
  require_non_negative(kind, "optim.lr", o.lr);
  require_non_negative(kind, "optim.eps", o.eps);
  require_unit_interval(kind, "optim.beta1", o.beta1);
  require_unit_interval(kind, "optim.beta2", o.beta2);
  require_non_negative(kind, "optim.weight_decay", o.weight_decay);
  return std::make_unique<Adam>(o);
}

}  // namespace troupe
