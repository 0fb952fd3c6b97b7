// RMSprop: torch.optim.RMSprop's single-tensor update as blocked loops over float*, one instantiation per option set.
#include "runtime/optim/rmsprop.h"

#include <algorithm>
#include <type_traits>

#include "runtime/optim/sqrt_block.h"
#include "runtime/optim/validate.h"

namespace troupe {
namespace {

using optim_detail::kBlock;

template <class F>
void with_flag(bool flag, F&& f) {
  if (flag) f(std::true_type{});
  else f(std::false_type{});
}

// Python scalars rounded to float, as ATen does when they meet a float32 tensor.
struct RmspropScalars {
  float alpha, one_minus_alpha, eps, weight_decay, momentum, neg_lr;
};

// `grad_avg` is used only when kCentered, `buf` only when kMomentum (either may be null otherwise).
// Blocked in two passes so that the square roots of a block go through sqrt_inplace (vectorised).
template <bool kDecay, bool kCentered, bool kMomentum>
void rmsprop_kernel(float* __restrict w, const float* __restrict g, float* __restrict square_avg,
                    float* __restrict grad_avg, float* __restrict buf, std::size_t n, const RmspropScalars& k) {
  alignas(64) float grad[kBlock];
  alignas(64) float avg[kBlock];
  for (std::size_t begin = 0; begin < n; begin += kBlock) {
    const std::size_t len = std::min(kBlock, n - begin);
    for (std::size_t j = 0; j < len; ++j) {
      const std::size_t i = begin + j;
      float gi = g[i];
      if constexpr (kDecay) gi = gi + k.weight_decay * w[i];  // grad = grad.add(param, alpha=weight_decay)
      grad[j] = gi;
      float si = square_avg[i] * k.alpha;     // square_avg.mul_(alpha)
      si = si + k.one_minus_alpha * gi * gi;  //           .addcmul_(grad, grad, value=1 - alpha)
      square_avg[i] = si;
      if constexpr (kCentered) {
        float ai = grad_avg[i] * k.alpha;     // grad_avg.mul_(alpha)
        ai = ai + k.one_minus_alpha * gi;     //         .add_(grad, alpha=1 - alpha)
        grad_avg[i] = ai;
        avg[j] = si - ai * ai;                // square_avg.addcmul(grad_avg, grad_avg, value=-1)
      } else {
        avg[j] = si;
      }
    }
    optim_detail::sqrt_inplace(avg, len);     // .sqrt_()
    for (std::size_t j = 0; j < len; ++j) {
      const std::size_t i = begin + j;
      const float a = avg[j] + k.eps;         // avg.add_(eps)
      if constexpr (kMomentum) {
        float bi = buf[i] * k.momentum;       // buf.mul_(momentum)
        bi = bi + grad[j] / a;                //    .addcdiv_(grad, avg)
        buf[i] = bi;
        w[i] = w[i] + k.neg_lr * bi;          // param.add_(buf, alpha=-lr)
      } else {
        w[i] = w[i] + k.neg_lr * grad[j] / a;  // param.addcdiv_(grad, avg, value=-lr)
      }
    }
  }
}

class Rmsprop final : public Optimizer {
 public:
  explicit Rmsprop(const RmspropOptions& o) : Optimizer(o.lr), o_(o) {}
  std::string_view kind() const override { return "rmsprop"; }

 protected:
  void update(Param& p, ParamState& s, double lr) override {
    float* square_avg = state_zeros(s, "square_avg", p).f32();
    float* buf = o_.momentum > 0.0 ? state_zeros(s, "momentum_buffer", p).f32() : nullptr;
    float* grad_avg = o_.centered ? state_zeros(s, "grad_avg", p).f32() : nullptr;
    RmspropScalars k;
    k.alpha = static_cast<float>(o_.alpha);
    k.one_minus_alpha = static_cast<float>(1.0 - o_.alpha);
    k.eps = static_cast<float>(o_.eps);
    k.weight_decay = static_cast<float>(o_.weight_decay);
    k.momentum = static_cast<float>(o_.momentum);
    k.neg_lr = static_cast<float>(-lr);
    const std::size_t n = static_cast<std::size_t>(p.value.numel());
    float* w = p.value.f32();
    const float* g = p.grad.f32();
    with_flag(o_.weight_decay != 0.0, [&](auto kDecay) {
      with_flag(o_.centered, [&](auto kCentered) {
        with_flag(o_.momentum > 0.0, [&](auto kMomentum) {
          rmsprop_kernel<kDecay, kCentered, kMomentum>(w, g, square_avg, grad_avg, buf, n, k);
        });
      });
    });
  }

 private:
  RmspropOptions o_;
};

}  // namespace

std::unique_ptr<Optimizer> make_rmsprop(const RmspropOptions& o) {
  using optim_detail::require_non_negative;
  require_non_negative("rmsprop", "optim.lr", o.lr);
  require_non_negative("rmsprop", "optim.eps", o.eps);
  require_non_negative("rmsprop", "optim.momentum", o.momentum);
  require_non_negative("rmsprop", "optim.weight_decay", o.weight_decay);
  require_non_negative("rmsprop", "optim.alpha", o.alpha);
  return std::make_unique<Rmsprop>(o);
}

}  // namespace troupe
